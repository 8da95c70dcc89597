"""Libriheavy -> VC training data over Libri-Light audio, as a reproducible N-hour subset.

Libriheavy ships lhotse cuts (``libriheavy_cuts_<subset>.jsonl.gz``) whose recordings point at
``download/librilight/<subset>/<spk>/<book>/<file>.flac``; they are rebased onto the local
Libri-Light copy (--librilight-dir). The subset: cuts ordered by a seeded hash of their id, taken
until N hours, so the same seed gives the same subset whatever the manifest order.
Libriheavy has no parallel speech, so a VC example reconstructs its own utterance (target = the
cut itself) in the voice given by ``speaker_ref``, another cut of the same speaker (input content
and output voice then come from different utterances). Text is the cased, punctuated
``texts[0]``. Ids have "/" replaced by "-" (they become file and HDF5 keys downstream). The
training subsets (small, medium, large) become part ``train``; dev, test_clean and test_other
keep their names, each with its own stamp and skip log (``libriheavy_<part>``), so they can
share an output directory.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from lhotse import MonoCut
from lhotse.serialization import deserialize_item
from lhotse.utils import fastcopy

from dualspeech.data.corpora.common import (NOT_UTF8, CorpusLayoutError, Preparer, check_layout,
                                            common_args, load_recordings, other_utterance,
                                            register_preparer, run_preparation)
from dualspeech.data.manifest_io import PartData, SkipLog, task_example

VERSION = 2   # 2: absolute audio paths, tail-checked audio, undecodable lines skipped, part per subset
PREFIX = "download/librilight/"
TRAIN_SUBSETS = ("small", "medium", "large")
LAYOUT = """<libriheavy>/                      (--corpus-dir: the Libriheavy manifests)
  libriheavy_cuts_small.jsonl.gz   (and/or _medium, _large, _dev, _test_clean, _test_other)
<librilight>/                      (--librilight-dir: Libri-Light audio, as untarred)
  small/<spk>/<book>/<file>.flac   (medium/, large/ likewise)"""


def part_name(subset: str) -> str:
    """small / medium / large -> train; dev, test_clean, test_other keep their names."""
    return "train" if subset in TRAIN_SUBSETS else subset


def read_cuts(manifest: Path, skips: SkipLog | None = None) -> Iterator[MonoCut]:
    """The manifest's cuts; a line that is not UTF-8 or not a cut is skipped with its number."""
    with gzip.open(manifest, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                yield deserialize_item(json.loads(raw.decode("utf-8")))
            except UnicodeDecodeError:
                if skips is not None:
                    skips.add(f"{manifest}:{n}", NOT_UTF8)
            except (ValueError, KeyError, TypeError) as e:
                if skips is not None:
                    skips.add(f"{manifest}:{n} ({type(e).__name__})", "unreadable manifest line")


def _key(seed: int, cut_id: str) -> str:
    return hashlib.sha1(f"{seed}:{cut_id}".encode()).hexdigest()


def select_subset(manifest: Path, hours: float, seed: int) -> set[str]:
    """Ids of the cuts that make up the first ``hours`` in seeded-hash order."""
    ranked = sorted((_key(seed, c.id), c.id, c.duration) for c in read_cuts(manifest))
    chosen, total = set(), 0.0
    for _, cid, dur in ranked:
        if total >= hours * 3600:
            break
        chosen.add(cid)
        total += dur
    return chosen


def rebase(source: str, librilight_dir: Path) -> Path:
    rel = source.split(PREFIX, 1)[1] if PREFIX in source else source
    return librilight_dir / rel


def check_audio_root(manifest: Path, light: Path, probe: int = 100) -> None:
    """The top directories the manifest's audio lives in (``medium/`` ...) must be in ``light``:
    a --librilight-dir one level off would otherwise turn every utterance into a skip."""
    tops = set()
    for i, cut in enumerate(read_cuts(manifest)):
        if i == probe:
            break
        rel = rebase(cut.recording.sources[0].source, Path()).parts
        tops.add(rel[0] if len(rel) > 1 else "")
    missing = sorted(t for t in tops if t and not (light / t).is_dir())
    if missing:
        raise CorpusLayoutError(
            f"libriheavy: --librilight-dir {light} has no {', '.join(m + '/' for m in missing)} "
            f"(the manifest's audio is {PREFIX}<{'|'.join(missing)}>/...). Point --librilight-dir "
            f"at the Libri-Light directory that holds small/ medium/ large/.\nExpected layout:\n{LAYOUT}")


def prepare_libriheavy(corpus_dir: str | Path, output_dir: str | Path, librilight_dir: str | Path,
                       subset: str = "small", hours: float = 1000.0, seed: int = 0,
                       num_jobs: int = 2, force: bool = False) -> bool:
    name = f"libriheavy_cuts_{subset}.jsonl.gz"
    root = check_layout("libriheavy", corpus_dir, [name], LAYOUT)
    light = check_layout("libriheavy", librilight_dir, ["*/*/*/*.flac"], LAYOUT, "--librilight-dir")
    manifest = root / name
    check_audio_root(manifest, light)
    part = part_name(subset)

    def build(skips: SkipLog) -> dict[str, PartData]:
        chosen = select_subset(manifest, hours, seed)
        rows, audio = [], {}
        for cut in read_cuts(manifest, skips):
            if cut.id not in chosen:
                continue
            sup = cut.supervisions[0] if cut.supervisions else None
            texts = (sup.custom or {}).get("texts") if sup else None
            text = (texts[0] if texts else (sup.text if sup else "")) or ""
            if not text.strip():
                skips.add(cut.id, "empty transcript")
                continue
            rid = cut.recording.id.replace("/", "-")
            audio.setdefault(rid, rebase(cut.recording.sources[0].source, light))
            rows.append((cut, sup, rid, text.strip()))
        recordings = load_recordings([(path, rid) for rid, path in audio.items()], skips, num_jobs)
        data, by_spk = PartData(), defaultdict(list)
        for cut, sup, rid, text in rows:
            rec = recordings.get(rid)
            if rec is None:
                skips.add(cut.id, "recording unusable (see its own entry)")
                continue
            cid = cut.id.replace("/", "-")
            new_sup = fastcopy(sup, id=cid, recording_id=rec.id, text=text)
            speech = MonoCut(id=cid, start=cut.start, duration=cut.duration, channel=0,
                             recording=rec, supervisions=[new_sup])
            data.cuts.append(speech)
            data.supervisions.append(new_sup)
            by_spk[new_sup.speaker].append(cid)
        used = {c.recording.id for c in data.cuts}
        data.recordings = [r for r in recordings.values() if r.id in used]
        rng = random.Random(seed)
        for cut in data.cuts:
            ref = other_utterance(rng, by_spk[cut.supervisions[0].speaker], [cut.id])
            if ref is None:
                skips.add(cut.id, "VC: no other utterance of the speaker in the subset")
                continue
            data.add_example(task_example(cut, "vc", {"target": cut.id, "speaker_ref": ref},
                                          text=cut.supervisions[0].text))
        return {part: data}

    return run_preparation("libriheavy", output_dir,
                           {"version": VERSION, "manifest": str(manifest.resolve()),
                            "librilight_dir": str(light.resolve()), "subset": subset,
                            "hours": hours, "seed": seed}, [manifest], build, force,
                           run_name="libriheavy" if part == "train" else f"libriheavy_{part}")


def _options(p) -> None:
    p.add_argument("--librilight-dir", required=True, help="Libri-Light audio root (small/ medium/ large/)")
    p.add_argument("--subset", default="small",
                   help="Libriheavy manifest: small, medium, large (part train), dev, test_clean, test_other")
    p.add_argument("--hours", type=float, default=1000.0, help="hours to select (paper: 1000)")
    p.add_argument("--seed", type=int, default=0)


register_preparer("libriheavy")(Preparer(
    "Libriheavy over Libri-Light: VC training subset", __doc__, LAYOUT, _options,
    lambda a: prepare_libriheavy(**common_args(a), librilight_dir=a.librilight_dir,
                                 subset=a.subset, hours=a.hours, seed=a.seed)))
