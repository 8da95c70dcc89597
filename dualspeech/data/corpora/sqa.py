"""SALMONN-style spoken-QA annotations over LibriSpeech audio (used by SQA and SC).

SALMONN's training/eval files are JSON ``{"annotation": [{"path": ".../LibriSpeech/<part>/
<spk>/<chapter>/<utt>.flac", "Q": question, "text": answer, "task": "QA", ...}, ...]}`` (a bare
list is accepted too). Paths point at the authors' machine, so only the utterance id (the file
stem) and the LibriSpeech part found in the path are used; the audio is taken from the local
LibriSpeech copy. Entries whose task is not a QA task are ignored (those files mix ASR entries).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dualspeech.data.corpora.common import NOT_UTF8, CorpusLayoutError
from dualspeech.data.manifest_io import SkipLog

LIBRISPEECH_PARTS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100",
                     "train-clean-360", "train-other-500")


@dataclass(frozen=True)
class QA:
    utt_id: str          # LibriSpeech utterance id, e.g. 103-1240-0000
    part: str | None     # LibriSpeech part named in the path, when it names one
    question: str
    answer: str


FORMAT = '{"annotation": [{"path": ..., "Q": ..., "text": ..., "task": "QA"}]}'


def annotation_files(paths) -> list[Path]:
    """The JSON files named: files as given, directories expanded to their *.json."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise CorpusLayoutError(f"--sqa-json: {missing} do not exist; give SALMONN-style SQA "
                                f"annotation files ({FORMAT}) or directories of them")
    return [f for p in map(Path, paths) for f in (sorted(p.glob("*.json")) if p.is_dir() else [p])]


def _undecodable(value) -> bool:
    """A string read with surrogateescape that held bytes that are not UTF-8."""
    return isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value)


def read_sqa_annotations(path: str | Path, skips: SkipLog, qa_tasks=("qa",)) -> list[QA]:
    """Parse one annotation file; entries lacking a question or an answer are skipped, and so
    are entries with bytes that are not UTF-8 (named by file, line and index)."""
    path = Path(path)
    skips.read(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
        data = json.loads(text)
    except (OSError, ValueError) as e:
        raise CorpusLayoutError(f"cannot read SQA annotations {path}: {e}. Expected SALMONN's "
                                f"JSON {FORMAT}") from e
    entries = data.get("annotation") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise CorpusLayoutError(f"{path}: no 'annotation' list (SALMONN format expected: {FORMAT})")
    bad_lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if _undecodable(line)]
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            continue
        bad = [v for v in e.values() if _undecodable(v)]
        if bad:
            line = next((n for n, text_line in bad_lines if bad[0] in text_line), "?")
            skips.add(f"{path}:{line} ({path.name}[{i}])", NOT_UTF8)
            continue
        if str(e.get("task", "QA")).lower() not in qa_tasks:
            continue
        where = f"{path.name}[{i}] {e.get('path')}"
        if not e.get("path"):
            skips.add(where, "SQA entry without audio path")
            continue
        question, answer = str(e.get("Q") or "").strip(), str(e.get("text") or "").strip()
        if not question or not answer:
            skips.add(where, "SQA entry without question or answer")
            continue
        parts = [p for p in Path(e["path"]).parts if p in LIBRISPEECH_PARTS]
        out.append(QA(Path(e["path"]).stem, parts[-1] if parts else None, question, answer))
    return out


def first_question_per_utterance(qas: list[QA], part: str, skips: SkipLog) -> list[QA]:
    """Example ids are speech cut ids, so one utterance carries one question; log the rest."""
    seen, out = set(), []
    for qa in qas:
        if qa.utt_id in seen:
            skips.add(f"{part}/{qa.utt_id}: {qa.question}", "second SQA question for one utterance")
            continue
        seen.add(qa.utt_id)
        out.append(qa)
    return out
