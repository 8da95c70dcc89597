"""LibriSpeech -> ASR task data, plus SQA examples from SALMONN-style annotations.

Ids, speakers and transcripts follow lhotse's librispeech recipe (``<spk>-<chapter>-<utt>``,
upper-case text, language English). lhotse's recipe aborts on an unreadable file or an empty
transcript line, so utterances are read here one by one and bad ones are logged as skips.
Parts keep LibriSpeech's names (train-clean-100, dev-clean, test-other, ...).
"""
from __future__ import annotations

import logging
from pathlib import Path

from dualspeech.data.corpora.common import (FirstOfEachId, Preparer, check_layout, common_args,
                                            load_recordings, read_lines, register_preparer, run_preparation,
                                            untranscribed_audio)
from dualspeech.data.corpora.sqa import (LIBRISPEECH_PARTS, annotation_files,
                                         first_question_per_utterance, read_sqa_annotations)
from dualspeech.data.manifest_io import PartData, SkipLog, speech_cut, task_example

log = logging.getLogger(__name__)
VERSION = 2   # 2: absolute audio paths, tail-checked audio, undecodable lines skipped
LAYOUT = """LibriSpeech/                      (--corpus-dir points here)
  train-clean-100/ ... test-other/ (any of the 7 parts)
    <spk>/<chapter>/<spk>-<chapter>.trans.txt   lines: "<spk>-<chapter>-<utt> TRANSCRIPT"
    <spk>/<chapter>/<spk>-<chapter>-<utt>.flac
<annotations>.json                 (--sqa-json, optional: SALMONN SQA format, see the sc corpus)"""


def librispeech_utterances(corpus_dir: Path, part: str, skips: SkipLog,
                           bad_ids: set[str] | None = None) -> list[tuple[Path, str, str]]:
    """(audio path, utterance id, transcript) for one part; empty transcripts are skipped, ids
    of undecodable lines and empty transcripts (skips counted already) go to ``bad_ids``."""
    out, first = [], FirstOfEachId(skips)
    for trans in sorted((corpus_dir / part).rglob("*.trans.txt")):
        for n, line in read_lines(trans, skips, bad_ids):
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue
            utt = fields[0]
            if len(fields) < 2 or not fields[1].strip():
                skips.add(f"{trans}:{utt}", "empty transcript")
                if bad_ids is not None:     # one skip per utterance: not "without transcript" too
                    bad_ids.add(utt)
                continue
            if not first(utt, f"{trans}:{n}"):
                continue
            out.append((trans.parent / f"{utt}.flac", utt, fields[1].strip()))
    return out


def find_parts(corpus_dir: Path, parts) -> list[str]:
    found = [p for p in LIBRISPEECH_PARTS if (corpus_dir / p).is_dir()]
    wanted = list(parts) if parts else found
    missing = [p for p in wanted if p not in found]
    if missing:
        check_layout("librispeech", corpus_dir, missing, LAYOUT)
    return wanted


def prepare_librispeech(corpus_dir: str | Path, output_dir: str | Path, parts=None,
                        sqa_annotations=(), num_jobs: int = 2, force: bool = False) -> bool:
    """Write ``librispeech_*`` manifests: ASR for every utterance, SQA where annotated."""
    corpus_dir = check_layout("librispeech", corpus_dir, ["*/*/*/*.trans.txt"], LAYOUT)
    parts = find_parts(corpus_dir, parts)
    inputs = [t for p in parts for t in (corpus_dir / p).rglob("*.trans.txt")]
    sqa_annotations = annotation_files(sqa_annotations)
    inputs += sqa_annotations

    def build(skips: SkipLog) -> dict[str, PartData]:
        qas = [qa for a in sqa_annotations for qa in read_sqa_annotations(a, skips)]
        result = {}
        for part in parts:
            bad_ids: set[str] = set()
            utts = librispeech_utterances(corpus_dir, part, skips, bad_ids)
            untranscribed_audio((corpus_dir / part).rglob("*.flac"),
                                bad_ids | {u for _, u, _ in utts}, skips)
            recs = load_recordings([(path, utt) for path, utt, _ in utts], skips, num_jobs)
            data = PartData()
            cuts = {}
            for _, utt, text in utts:
                if utt in recs:
                    cut = speech_cut(recs[utt], text, speaker=utt.split("-")[0])
                    cuts[utt] = cut
                    data.add_cut(cut)
                    data.add_example(task_example(cut, "asr", text=text))
            add_sqa(data, cuts, [qa for qa in qas if qa.part in (part, None)], part, skips)
            result[part] = data
        found = {c.id: p for p, data in result.items() for c in data.cuts}
        for qa in qas:  # annotations of parts not asked for are not counted
            if found.get(qa.utt_id) is None and (qa.part is None or qa.part in parts):
                skips.add(f"{qa.part}/{qa.utt_id}", "SQA audio not among usable LibriSpeech utterances")
        return result

    return run_preparation("librispeech", output_dir,
                           {"version": VERSION, "corpus_dir": str(corpus_dir.resolve()),
                            "parts": parts}, inputs, build, force)


def _options(p) -> None:
    p.add_argument("--parts", nargs="+", help="LibriSpeech parts (default: all present)")
    p.add_argument("--sqa-json", nargs="*", default=[],
                   help="SALMONN-style SQA annotation JSON files (or directories of them)")


register_preparer("librispeech")(Preparer(
    "LibriSpeech: ASR, plus SQA from SALMONN annotations", __doc__, LAYOUT, _options,
    lambda a: prepare_librispeech(**common_args(a), parts=a.parts, sqa_annotations=a.sqa_json)))


def add_sqa(data: PartData, cuts: dict, qas, part: str, skips: SkipLog) -> None:
    """One SQA example per annotated utterance of this part (first question wins)."""
    for qa in first_question_per_utterance([q for q in qas if q.utt_id in cuts], part, skips):
        cut = cuts[qa.utt_id]
        data.add_example(task_example(cut, "sqa", text=cut.supervisions[0].text,
                                      question=qa.question, answer=qa.answer))
