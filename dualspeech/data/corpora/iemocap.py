"""IEMOCAP -> SER task data: Sessions 1-4 train, Session 5 test, 4 emotion classes.

Labels are the consensus categories of ``dialog/EmoEvaluation/<dialog>.txt`` (lines
``[start - end]<TAB><utt id><TAB><cat><TAB>[V, A, D]``). The usual 4-class setup: ``neu`` ->
neutral, ``hap`` and ``exc`` (excited, merged) -> happy, ``sad`` -> sad, ``ang`` -> angry; every
other category (fru, sur, fea, dis, oth, xxx = no agreement) is dropped and counted in the skip
log. Transcripts come from ``dialog/transcriptions``; speakers are session + gender (Ses01F).
"""
from __future__ import annotations

import re
from pathlib import Path

from dualspeech.data.corpora.common import (Preparer, check_layout, common_args, load_recordings,
                                            read_lines, register_preparer, run_preparation)
from dualspeech.data.manifest_io import PartData, SkipLog, speech_cut, task_example

VERSION = 2   # 2: absolute audio paths, tail-checked audio, undecodable lines skipped
EMOTION_MAP = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
PARTS = {"train": (1, 2, 3, 4), "test": (5,)}
LAYOUT = """IEMOCAP_full_release/             (--corpus-dir points here)
  Session1/ ... Session5/
    dialog/EmoEvaluation/<dialog>.txt     "[6.2901 - 8.2357]\\tSes01F_impro01_F000\\tneu\\t[2.5, 2.5, 2.5]"
    dialog/transcriptions/<dialog>.txt    "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
    sentences/wav/<dialog>/<utt id>.wav"""
LABEL_RE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)")
TEXT_RE = re.compile(r"^(Ses\S+)\s+\[[^\]]*\]:\s*(.*)$")


def read_labels(session_dir: Path, skips: SkipLog) -> dict[str, str | None]:
    """{utterance: label}; an utterance labelled differently in two files is a counted skip
    naming both (its label None, so it is not counted again as unlabelled)."""
    labels, where = {}, {}
    for path in sorted((session_dir / "dialog" / "EmoEvaluation").glob("*.txt")):
        for n, line in read_lines(path, skips):
            m = LABEL_RE.match(line)
            if not m:
                continue
            utt, label = m.groups()
            if utt in labels and labels[utt] not in (label, None):
                both = f"{utt}: {labels[utt]} at {where[utt]}, {label} at {path}:{n}"
                skips.add(both, "conflicting emotion labels")
                labels[utt] = None
            elif utt not in labels:
                labels[utt], where[utt] = label, f"{path}:{n}"
    return labels


def read_transcripts(session_dir: Path, skips: SkipLog) -> dict[str, str]:
    texts = {}
    for path in sorted((session_dir / "dialog" / "transcriptions").glob("*.txt")):
        for _, line in read_lines(path, skips):
            m = TEXT_RE.match(line.strip())
            if m:
                texts[m.group(1)] = m.group(2).strip()
    return texts


def prepare_iemocap(corpus_dir: str | Path, output_dir: str | Path, num_jobs: int = 2,
                    force: bool = False) -> bool:
    root = check_layout("iemocap", corpus_dir, [f"Session{i}/dialog/EmoEvaluation/*.txt"
                                                for i in range(1, 6)]
                        + [f"Session{i}/sentences/wav/*/*.wav" for i in range(1, 6)], LAYOUT)
    inputs = sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt"))
    inputs += sorted(root.glob("Session*/dialog/transcriptions/*.txt"))

    def build(skips: SkipLog) -> dict[str, PartData]:
        result = {}
        for part, sessions in PARTS.items():
            data, items, meta = PartData(), [], []
            for s in sessions:
                sdir = root / f"Session{s}"
                labels, texts = read_labels(sdir, skips), read_transcripts(sdir, skips)
                for wav in sorted((sdir / "sentences" / "wav").glob("*/*.wav")):
                    utt = wav.stem
                    if utt.startswith("._"):
                        continue
                    if utt not in labels:
                        skips.add(wav, "missing emotion label")
                        continue
                    if labels[utt] is None:      # conflicting labels: counted when read
                        continue
                    emotion = EMOTION_MAP.get(labels[utt])
                    if emotion is None:
                        skips.add(f"{utt} ({labels[utt]})", "emotion outside the 4-class mapping")
                        continue
                    if not texts.get(utt):
                        skips.add(wav, "empty transcript")
                        continue
                    items.append((wav, utt))
                    meta.append((utt, emotion, texts[utt]))
            recs = load_recordings(items, skips, num_jobs)
            for utt, emotion, text in meta:
                if utt not in recs:
                    continue
                gender = utt.split("_")[-1][:1]
                cut = speech_cut(recs[utt], text, f"{utt[:5]}{gender}", gender=gender,
                                 custom={"emotion": emotion})
                data.add_cut(cut)
                data.add_example(task_example(cut, "ser", emotion=emotion, text=text))
            result[part] = data
        return result

    return run_preparation("iemocap", output_dir, {"version": VERSION,
                                                   "corpus_dir": str(root.resolve())},
                           inputs, build, force)


register_preparer("iemocap")(Preparer(
    "IEMOCAP: SER (Sessions 1-4 train, 5 test; 4 classes)", __doc__, LAYOUT, lambda p: None,
    lambda a: prepare_iemocap(**common_args(a))))
