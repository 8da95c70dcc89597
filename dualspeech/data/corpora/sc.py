"""SC (spoken conversation): SALMONN SQA over LibriSpeech with question and answer spoken by TTS.

Per annotated LibriSpeech utterance: the statement is the LibriSpeech audio, the question is
synthesised in one of the "user" voices and the answer in one of the "assistant" voices; the
speaker prompt is another answer synthesised in the same assistant voice. Answer voices are dealt
round-robin over the seeded-shuffled utterances of a part, using only as many voices as give each
one at least two answers, so every utterance has a prompt (a part with one utterance has none). Synthesis goes
through the pluggable TTS command (dualspeech.data.synth; default espeak-ng), 16 kHz wav under
``<output_dir>/audio/sc/<part>/``; an interrupted run resumes from the wavs already made.
"""
from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from dualspeech.data.corpora.common import (CorpusLayoutError, Preparer, check_layout,
                                            common_args, load_recording, other_utterance,
                                            register_preparer, run_preparation)
from dualspeech.data.corpora.librispeech import LAYOUT as LIBRISPEECH_LAYOUT
from dualspeech.data.corpora.librispeech import librispeech_utterances
from dualspeech.data.corpora.sqa import (annotation_files, first_question_per_utterance,
                                         read_sqa_annotations)
from dualspeech.data.manifest_io import PartData, SkipLog, speech_cut, task_example
from dualspeech.data.synth import (DEFAULT_TEMPLATE, SynthJob, TTSCommand, Voice, claim_audio_dir,
                                   synthesize_all)
from dualspeech.utils.stamp import params_digest

VERSION = 2   # 2: absolute audio paths, tail-checked audio, undecodable lines skipped
LAYOUT = LIBRISPEECH_LAYOUT + """
<annotations>.json                 (--sqa-json: SALMONN format, paths into LibriSpeech)
  {"annotation": [{"path": ".../LibriSpeech/test-clean/1089/134686/1089-134686-0000.flac",
                   "Q": "question", "text": "answer", "task": "QA"}, ...]}"""
QUESTION_VOICES = {"sc_user1": Voice("en-us+m1", pitch=45, rate=165),
                   "sc_user2": Voice("en-gb-x-rp+f5", pitch=56, rate=160)}
ANSWER_VOICES = {"sc_assistant1": Voice("en-us+f2", pitch=58, rate=160),
                 "sc_assistant2": Voice("en-gb-x-rp+m3", pitch=40, rate=155),
                 "sc_assistant3": Voice("en+f2", pitch=52, rate=165),
                 "sc_assistant4": Voice("en-us+m2", pitch=48, rate=152)}


def deal_answer_voices(utt_ids: list[str], rng: random.Random) -> dict[str, str]:
    """utterance -> assistant voice: round-robin over a seeded shuffle, over as many voices as
    leave each voice two answers or more (its answers prompt each other)."""
    voices = sorted(ANSWER_VOICES)
    rng.shuffle(voices)
    voices = voices[:max(1, min(len(voices), len(utt_ids) // 2))]
    order = sorted(utt_ids)
    rng.shuffle(order)
    return {u: voices[i % len(voices)] for i, u in enumerate(order)}


def prepare_sc(corpus_dir: str | Path, output_dir: str | Path, sqa_annotations,
               tts_command: str = DEFAULT_TEMPLATE, max_per_part: int | None = None,
               seed: int = 0, num_jobs: int = 2, force: bool = False) -> bool:
    root = check_layout("sc", corpus_dir, ["*/*/*/*.trans.txt"], LAYOUT)
    sqa_annotations = annotation_files(sqa_annotations)
    if not sqa_annotations:
        raise CorpusLayoutError("sc: give at least one SALMONN SQA annotation file (--sqa-json)")
    engine = TTSCommand(tts_command, 16000)
    out = Path(output_dir)
    params = {"version": VERSION, "corpus_dir": str(root.resolve()), "tts": engine.describe(),
              "max_per_part": max_per_part, "seed": seed}

    def build(skips: SkipLog) -> dict[str, PartData]:
        qas = [qa for a in sqa_annotations for qa in read_sqa_annotations(a, skips)]
        by_part = defaultdict(list)
        for qa in qas:
            if qa.part is None:
                skips.add(qa.utt_id, "SQA path names no LibriSpeech part")
            else:
                by_part[qa.part].append(qa)
        audio = out / "audio" / "sc"
        claim_audio_dir(audio, params_digest(params), force)
        result = {}
        for part, entries in sorted(by_part.items()):
            rng = random.Random(f"{seed}-{part}")
            transcripts = {u: (p, t) for p, u, t in librispeech_utterances(root, part, skips)}
            plan = []
            for qa in first_question_per_utterance(entries, part, skips):
                if qa.utt_id not in transcripts:
                    skips.add(f"{part}/{qa.utt_id}", "SQA audio not in LibriSpeech transcripts")
                    continue
                plan.append(qa)
            if max_per_part is not None and len(plan) > max_per_part:
                plan = [plan[i] for i in sorted(rng.sample(range(len(plan)), max_per_part))]
            data, jobs, rows, answers = PartData(), [], [], defaultdict(list)
            usable = [(qa, rec) for qa in plan
                      if (rec := load_recording(transcripts[qa.utt_id][0], qa.utt_id, skips))]
            answer_voice = deal_answer_voices([qa.utt_id for qa, _ in usable], rng)
            for qa, rec in usable:
                text = transcripts[qa.utt_id][1]
                qv, av = rng.choice(sorted(QUESTION_VOICES)), answer_voice[qa.utt_id]
                q_id, a_id = f"sc_{qa.utt_id}_q", f"sc_{qa.utt_id}_ans"
                jobs += [SynthJob(str(audio / part / f"{q_id}.wav"), qa.question, QUESTION_VOICES[qv]),
                         SynthJob(str(audio / part / f"{a_id}.wav"), qa.answer, ANSWER_VOICES[av])]
                rows.append((qa, rec, text, (q_id, qv), (a_id, av)))
                answers[av].append(a_id)
            synthesize_all(engine, jobs, num_jobs, desc=f"sc {part}")
            for qa, rec, text, (q_id, qv), (a_id, av) in rows:
                ref = other_utterance(rng, answers[av], [a_id])
                if ref is None:
                    skips.add(qa.utt_id, "SC: no other answer in the assistant voice for the prompt")
                    continue
                statement = speech_cut(rec, text, qa.utt_id.split("-")[0])
                data.add_cut(statement)
                for uid, txt, spk in ((q_id, qa.question, qv), (a_id, qa.answer, av)):
                    wav = audio / part / f"{uid}.wav"
                    data.add_cut(speech_cut(load_recording(wav, uid, skips), txt, spk))
                data.add_example(task_example(statement, "sc",
                                              {"question": q_id, "target": a_id, "speaker_ref": ref},
                                              text=text, question=qa.question, answer=qa.answer))
            result[part] = data
        return result

    return run_preparation("sc", output_dir, params, sqa_annotations, build, force)



def _options(p) -> None:
    p.add_argument("--sqa-json", nargs="+", required=True,
                   help="SALMONN-style SQA annotation JSON files (or directories of them)")
    p.add_argument("--tts-command", default=DEFAULT_TEMPLATE, help="TTS command template (docs/data.md)")
    p.add_argument("--max-per-part", type=int, help="seeded subset size per LibriSpeech part")
    p.add_argument("--seed", type=int, default=0)


register_preparer("sc")(Preparer(
    "SC: SALMONN SQA over LibriSpeech, question/answer synthesised by TTS (--nj: TTS processes)",
    __doc__, LAYOUT, _options,
    lambda a: prepare_sc(**common_args(a), sqa_annotations=a.sqa_json, tts_command=a.tts_command,
                         max_per_part=a.max_per_part, seed=a.seed)))
