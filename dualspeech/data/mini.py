"""The offline mini corpus: real espeak-ng speech for all 8 tasks, seeded and reproducible.

Design (docs/data.md has the full story):
* 12 speakers = espeak-ng voice + variant + pitch + rate; 9 speak train/dev, 3 are held out
  for test. Sentences come from :mod:`dualspeech.data.mini_grammar`; each split has its own
  sentences, so test sentences and test speakers are both unseen.
* Per sentence five utterances: the statement by speakers A and B (neutral), the statement by a
  third speaker C in one of 4 emotions (prosody: pitch, rate, amplitude; emotions rotate so
  classes are balanced), a spoken question by A and its spoken answer by B.
* Task examples per sentence: ASR, S2TT (German), TTS, T2ST (Spanish for A, French for B), SQA
  (a different question for A and B), VC A->B and B->A, SER on C's utterance, SC (A's statement
  + A's question -> B's answer). ``speaker_ref`` is always another utterance of the output voice.

Same size + seed + TTS command -> byte-identical audio and manifests (for the same output dir,
whose absolute path is recorded in the recordings). A finished run is stamped; re-running it is
a no-op, and an interrupted run resumes from the wavs already written.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from lhotse import Recording

from dualspeech.data.manifest_io import PartData, Stamp, speech_cut, task_example, write_part
from dualspeech.data.mini_grammar import Sentence, sample_sentences
from dualspeech.data.synth import (DEFAULT_TEMPLATE, SynthJob, TTSCommand, Voice, claim_audio_dir,
                                   synthesize_all)
from dualspeech.data.tasks import EMOTIONS

log = logging.getLogger(__name__)

CORPUS = "mini"
VERSION = 2  # bump when the generator's output changes for the same arguments
PARTS = ("train", "dev", "test")
SAMPLE_RATE = 16000

# speaker id -> (voice, gender); the last three are the held-out test speakers. Voices were
# picked among espeak-ng variants for intelligibility: Whisper tiny.en WER 0.37-0.63 on grammar
# sentences (en-gb-scotland, en-029 and some named variants were 0.8-3.2, dropped).
SPEAKERS: dict[str, tuple[Voice, str]] = {
    "spk01": (Voice("en-us+m1", pitch=45, rate=162), "m"),
    "spk02": (Voice("en-us+f2", pitch=58, rate=158), "f"),
    "spk03": (Voice("en+f2", pitch=52, rate=165), "f"),
    "spk04": (Voice("en-gb-x-rp+m3", pitch=40, rate=155), "m"),
    "spk05": (Voice("en-us+f3", pitch=60, rate=160), "f"),
    "spk06": (Voice("en-us+m2", pitch=48, rate=152), "m"),
    "spk07": (Voice("en-us+m5", pitch=42, rate=166), "m"),
    "spk08": (Voice("en+f3", pitch=64, rate=156), "f"),
    "spk09": (Voice("en-us+m7", pitch=36, rate=160), "m"),
    "spk10": (Voice("en-gb-x-rp+f5", pitch=56, rate=160), "f"),
    "spk11": (Voice("en-us+Michael", pitch=44, rate=164), "m"),
    "spk12": (Voice("en-us+f4", pitch=62, rate=156), "f"),
}
TEST_SPEAKERS = ("spk10", "spk11", "spk12")
TRAIN_SPEAKERS = tuple(s for s in SPEAKERS if s not in TEST_SPEAKERS)

# emotion -> (pitch offset, rate factor, amplitude)
PROSODY = {"neutral": (0, 1.0, 100), "happy": (22, 1.18, 125), "sad": (-18, 0.72, 65),
           "angry": (8, 1.12, 170)}

# sentences per split
SIZES = {"tiny": {"train": 18, "dev": 6, "test": 8},
         "small": {"train": 90, "dev": 12, "test": 16},
         "default": {"train": 320, "dev": 30, "test": 40}}


@dataclass
class Utt:
    id: str
    text: str
    speaker: str
    emotion: str = "neutral"

    @property
    def voice(self) -> Voice:
        voice = SPEAKERS[self.speaker][0]
        dp, rate, amp = PROSODY[self.emotion]
        return replace(voice, pitch=min(99, max(0, voice.pitch + dp)),
                       rate=round(voice.rate * rate), amplitude=amp)


@dataclass
class ExampleSpec:
    task: str
    primary: str
    links: dict = field(default_factory=dict)
    fields: dict = field(default_factory=dict)


@dataclass
class PartPlan:
    utts: list[Utt] = field(default_factory=list)
    examples: list[ExampleSpec] = field(default_factory=list)


def plan_part(part: str, sentences: list[Sentence], rng: random.Random) -> PartPlan:
    """Which utterances to speak and which task examples to build for one split."""
    pool = TEST_SPEAKERS if part == "test" else TRAIN_SPEAKERS
    # at most one speaker per two sentences, so every speaker has >= 2 statements (speaker_ref)
    speakers = list(pool[:max(3, min(len(pool), len(sentences) // 2))])
    rng.shuffle(speakers)
    plan = PartPlan()
    own: dict[str, list[str]] = {s: [] for s in speakers}  # speaker -> neutral statements
    pending = []
    for i, sent in enumerate(sentences):
        a = speakers[i % len(speakers)]
        b = rng.choice([s for s in speakers if s != a])
        c = rng.choice([s for s in speakers if s not in (a, b)])
        emotion = EMOTIONS[i % len(EMOTIONS)]
        stem = f"{CORPUS}_{part}_{i:04d}"
        en = sent.text("en")
        ua, ub = Utt(f"{stem}_a_{a}", en, a), Utt(f"{stem}_b_{b}", en, b)
        ue = Utt(f"{stem}_emo_{c}", en, c, emotion)
        k_a, k_b, k_sc = (rng.choice(sent.question_kinds()) for _ in range(3))
        q_sc, ans_sc = sent.question(k_sc)
        uq, uans = Utt(f"{stem}_q_{a}", q_sc, a), Utt(f"{stem}_ans_{b}", ans_sc, b)
        plan.utts += [ua, ub, ue, uq, uans]
        own[a].append(ua.id)
        own[b].append(ub.id)
        s2tt = dict(source_text=en, target_text=sent.text("de"), source_lang="en",
                    target_lang="de")
        ex = plan.examples
        for u, src_lang, kind in ((ua, "es", k_a), (ub, "fr", k_b)):
            question, answer = sent.question(kind)
            ex += [ExampleSpec("asr", u.id, fields={"text": en}),
                   ExampleSpec("s2tt", u.id, fields={"text": en, **s2tt}),
                   ExampleSpec("sqa", u.id, fields={"text": en, "question": question,
                                                    "answer": answer})]
            pending.append((ExampleSpec("tts", u.id, fields={"text": en}), u.speaker, ()))
            pending.append((ExampleSpec("t2st", u.id, fields={
                "text": en, "source_text": sent.text(src_lang), "target_text": en,
                "source_lang": src_lang, "target_lang": "en"}), u.speaker, ()))
        for src, tgt in ((ua, ub), (ub, ua)):
            pending.append((ExampleSpec("vc", src.id, links={"target": tgt.id},
                                        fields={"text": en}), tgt.speaker, (tgt.id,)))
        ex.append(ExampleSpec("ser", ue.id, fields={"text": en, "emotion": emotion}))
        pending.append((ExampleSpec("sc", ua.id, links={"question": uq.id, "target": uans.id},
                                    fields={"text": en, "question": q_sc, "answer": ans_sc}),
                        b, ()))
    # speaker prompts: another neutral statement of the output voice, never the output itself
    for spec, voice_of, avoid in pending:
        choices = [u for u in own[voice_of] if u not in (spec.primary, *avoid)]
        spec.links["speaker_ref"] = rng.choice(choices)
        plan.examples.append(spec)
    return plan


def plan_corpus(size: str, seed: int) -> dict[str, PartPlan]:
    if size not in SIZES:
        raise ValueError(f"unknown mini corpus size {size!r}; choose one of {sorted(SIZES)}")
    counts = SIZES[size]
    rng = random.Random(seed)
    sentences = sample_sentences(sum(counts.values()), rng)
    plans, start = {}, 0
    for part in PARTS:
        plans[part] = plan_part(part, sentences[start:start + counts[part]],
                                random.Random(f"{seed}-{part}"))
        start += counts[part]
    return plans


def make_mini_corpus(out_dir: str | Path, size: str = "default", seed: int = 0, nj: int = 2,
                     tts_command: str = DEFAULT_TEMPLATE, force: bool = False) -> dict[str, int]:
    """Generate (or confirm up to date) the mini corpus; returns utterances per split."""
    out = Path(out_dir).resolve()
    engine = TTSCommand(tts_command, SAMPLE_RATE)
    params = {"corpus": CORPUS, "version": VERSION, "size": size, "seed": seed,
              "tts": engine.describe(), "out_dir": str(out)}
    stamp = Stamp(out / f".{CORPUS}_stamp.json", params)
    plans = plan_corpus(size, seed)
    counts = {p: len(plans[p].utts) for p in PARTS}
    if stamp.done() and not force:
        log.info("mini corpus in %s is up to date (size=%s seed=%d); nothing to do", out, size, seed)
        return counts
    audio = out / "audio"
    claim_audio_dir(audio, stamp.digest, force)
    jobs = [SynthJob(str(audio / part / f"{u.id}.wav"), u.text, u.voice)
            for part in PARTS for u in plans[part].utts]
    synthesize_all(engine, jobs, nj=nj, desc=f"mini {size}")
    outputs = [j.wav for j in jobs]  # a deleted wav invalidates the stamp too
    for part in PARTS:
        outputs += write_part(out, CORPUS, part, build_part(plans[part], audio / part))
    stamp.write(outputs)
    log.info("mini corpus (%s, seed %d) written to %s: %s utterances", size, seed, out, counts)
    return counts


def build_part(plan: PartPlan, audio_dir: Path) -> PartData:
    data = PartData()
    cuts = {}
    for u in plan.utts:
        rec = Recording.from_file(audio_dir / f"{u.id}.wav", recording_id=u.id)
        cut = speech_cut(rec, u.text, u.speaker, gender=SPEAKERS[u.speaker][1],
                         custom={"emotion": u.emotion})
        cuts[u.id] = cut
        data.add_cut(cut)
    for spec in plan.examples:
        data.add_example(task_example(cuts[spec.primary], spec.task, spec.links, **spec.fields))
    return data
