"""The offline mini corpus: real speech from several TTS engines for all 8 tasks, seeded.

Design (docs/data.md has the full story):
* 12 speakers from 4 engines (piper, festival, flite, SVOX pico), both sexes, picked by how well
  Whisper reads them (../docs/data.md has the measured WERs); 9 speak train/dev, 3 are held out
  for test. Sentences come from :mod:`dualspeech.data.mini_grammar`; each split has its own
  sentences, so test sentences and test speakers are both unseen.
* Per sentence five utterances: the statement by speakers A and B (neutral), the statement by a
  third speaker C in one of 4 emotions (sox effects relative to C's own neutral voice: pitch,
  tempo, gain, spectral tilt; emotions rotate so classes are balanced), a spoken question by A
  and its spoken answer by B.
* Task examples per sentence: ASR, S2TT (German), TTS, T2ST (Spanish for A, French for B; the
  source is text, the target is A's/B's English speech), SQA (a different question for A and
  B), VC A->B and B->A, SER on C's utterance, SC (A's statement + A's question -> B's answer).
  ``speaker_ref`` is always another utterance of the output voice.

Same size + seed -> byte-identical audio and manifests (for the same output dir, whose absolute
path is recorded in the recordings). A finished run is stamped (the voices and engine versions
included); re-running it is a no-op, and an interrupted run resumes from the wavs already
written. A missing engine fails up front, naming the command that installs it. The finished
corpus gets its fingerprint (``fingerprint.json``: hashes of audio and texts, synthesiser package
versions; :mod:`dualspeech.data.fingerprint`).
"""
from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from lhotse import Recording

from dualspeech.data.fingerprint import FILENAME, corpus_fingerprint, write_fingerprint
from dualspeech.data.manifest_io import PartData, speech_cut, task_example, write_part
from dualspeech.data.mini_grammar import Sentence, sample_sentences
from dualspeech.data.synth import (Effects, EngineSet, SynthJob, Voice, claim_audio_dir,
                                   synthesize_all)
from dualspeech.data.tasks import EMOTIONS
from dualspeech.utils.stamp import Stamp

log = logging.getLogger(__name__)

CORPUS = "mini"
VERSION = 3  # bump when the generator's output changes for the same arguments
PARTS = ("train", "dev", "test")
SAMPLE_RATE = 16000
LEVEL = Effects(level_db=-6.0)  # every engine's output peak-normalised before its emotion


def _voice(engine: str, name: str, pitch_cents: int = 0) -> Voice:
    return Voice(name, engine=engine, effects=LEVEL + Effects(pitch_cents=pitch_cents))


# speaker id -> (voice, gender); the last three are the held-out test speakers, the three voices
# Whisper reads best (docs/data.md). Four train voices are sox pitch shifts of other train
# voices: Resemblyzer puts them at cosine ~0.68 from their source (same voice ~0.86, other
# voices ~0.5), i.e. distinct speakers; shifts of the test voices are not used, so test stays unseen.
SPEAKERS: dict[str, tuple[Voice, str]] = {
    "spk01": (_voice("festival", "cmu_us_slt_arctic_hts"), "f"),
    "spk02": (_voice("festival", "kal_diphone"), "m"),
    "spk03": (_voice("festival", "ked_diphone"), "m"),
    "spk04": (_voice("flite", "rms"), "m"),
    "spk05": (_voice("pico", "en-GB"), "f"),
    "spk06": (_voice("festival", "cmu_us_slt_arctic_hts", -300), "f"),
    "spk07": (_voice("pico", "en-GB", -300), "f"),
    "spk08": (_voice("flite", "rms", 250), "m"),
    "spk09": (_voice("festival", "ked_diphone", -250), "m"),
    "spk10": (_voice("piper", "joe"), "m"),
    "spk11": (_voice("pico", "en-US"), "f"),
    "spk12": (_voice("flite", "awb"), "m"),
}
TEST_SPEAKERS = ("spk10", "spk11", "spk12")
TRAIN_SPEAKERS = tuple(s for s in SPEAKERS if s not in TEST_SPEAKERS)

# emotion -> sox effects on top of the speaker's own voice (relative: each speaker keeps its
# pitch and timbre; happy is higher and faster, sad lower, slower, quieter and duller, angry
# louder, faster and brighter)
EMOTION_EFFECTS = {
    "neutral": Effects(),
    "happy": Effects(pitch_cents=300, tempo=1.1, gain_db=2.0, treble_db=2.0),
    "sad": Effects(pitch_cents=-250, tempo=0.82, gain_db=-6.0, treble_db=-6.0),
    "angry": Effects(pitch_cents=120, tempo=1.12, gain_db=5.0, treble_db=6.0),
}

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
        return replace(voice, effects=voice.effects + EMOTION_EFFECTS[self.emotion])


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
                     force: bool = False) -> dict[str, int]:
    """Generate (or confirm up to date) the mini corpus; returns utterances per split."""
    out = Path(out_dir).resolve()
    plans = plan_corpus(size, seed)
    counts = {p: len(plans[p].utts) for p in PARTS}
    engine = EngineSet([v for v, _ in SPEAKERS.values()], SAMPLE_RATE)  # fails if one is missing
    params = {"corpus": CORPUS, "version": VERSION, "size": size, "seed": seed,
              "tts": engine.describe(), "out_dir": str(out),
              "voices": {spk: asdict(v) for spk, (v, _) in SPEAKERS.items()},
              "emotions": {e: asdict(fx) for e, fx in EMOTION_EFFECTS.items()}}
    stamp = Stamp(out / f".{CORPUS}_stamp.json", params)
    if stamp.done(force):
        log.info("mini corpus in %s is up to date (size=%s seed=%d); nothing to do", out, size, seed)
        if not (out / FILENAME).is_file():   # made before fingerprints: today's versions
            write_fingerprint(out, corpus_fingerprint(out, engine.all_packages()))
        return counts
    audio = out / "audio"
    for damaged in stamp.damaged():   # resynthesised below (a damaged manifest is rewritten anyway)
        if damaged.suffix == ".wav" and damaged.is_file():
            log.warning("%s changed since it was written; synthesising it again", damaged)
            damaged.unlink()
    claim_audio_dir(audio, stamp.digest, force)
    jobs = [SynthJob(str(audio / part / f"{u.id}.wav"), u.text, u.voice)
            for part in PARTS for u in plans[part].utts]
    synthesize_all(engine, jobs, nj=nj, desc=f"mini {size}")
    outputs = [j.wav for j in jobs]  # a deleted wav invalidates the stamp too
    for part in PARTS:
        outputs += write_part(out, CORPUS, part, build_part(plans[part], audio / part))
    stamp.write(outputs)
    fingerprint = corpus_fingerprint(out, engine.all_packages())
    log.info("corpus fingerprint %s written to %s", fingerprint["id"],
             write_fingerprint(out, fingerprint))
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
