"""Libriheavy -> VC training data over Libri-Light audio, as a reproducible N-hour subset.

Libriheavy ships lhotse cuts (``libriheavy_cuts_<subset>.jsonl.gz``) whose recordings point at
``download/librilight/<subset>/<spk>/<book>/<file>.flac``; they are rebased onto the local
Libri-Light copy (--librilight-dir). The subset: cuts ordered by a seeded hash of their id, taken
until N hours, so the same seed gives the same subset whatever the manifest order.
Libriheavy has no parallel speech, so a VC example reconstructs its own utterance (target = the
cut itself) in the voice given by ``speaker_ref``, another cut of the same speaker (input content
and output voice then come from different utterances). Text is the cased, punctuated
``texts[0]``. Ids have "/" replaced by "-" (they become file and HDF5 keys downstream).
"""
from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from pathlib import Path

from lhotse import MonoCut, load_manifest_lazy
from lhotse.utils import fastcopy

from dualspeech.data.corpora.common import (check_layout, load_recording, other_utterance,
                                            run_preparation)
from dualspeech.data.manifest_io import PartData, SkipLog, task_example

VERSION = 1
PREFIX = "download/librilight/"
LAYOUT = """<libriheavy>/                      (--corpus-dir: the Libriheavy manifests)
  libriheavy_cuts_small.jsonl.gz   (and/or _medium, _large, _dev, _test_clean, _test_other)
<librilight>/                      (--librilight-dir: Libri-Light audio, as untarred)
  small/<spk>/<book>/<file>.flac   (medium/, large/ likewise)"""


def _key(seed: int, cut_id: str) -> str:
    return hashlib.sha1(f"{seed}:{cut_id}".encode()).hexdigest()


def select_subset(manifest: Path, hours: float, seed: int) -> set[str]:
    """Ids of the cuts that make up the first ``hours`` in seeded-hash order."""
    ranked = sorted((_key(seed, c.id), c.id, c.duration) for c in load_manifest_lazy(manifest))
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


def prepare_libriheavy(corpus_dir: str | Path, output_dir: str | Path, librilight_dir: str | Path,
                       subset: str = "small", hours: float = 1000.0, seed: int = 0,
                       force: bool = False) -> bool:
    name = f"libriheavy_cuts_{subset}.jsonl.gz"
    root = check_layout("libriheavy", corpus_dir, [name], LAYOUT)
    light = check_layout("libriheavy", librilight_dir, ["*/*/*/*.flac"], LAYOUT, "--librilight-dir")
    manifest = root / name

    def build(skips: SkipLog) -> dict[str, PartData]:
        chosen = select_subset(manifest, hours, seed)
        recordings: dict[str, object] = {}
        data, by_spk = PartData(), defaultdict(list)
        seen_rec = set()
        for cut in load_manifest_lazy(manifest):
            if cut.id not in chosen:
                continue
            sup = cut.supervisions[0] if cut.supervisions else None
            texts = (sup.custom or {}).get("texts") if sup else None
            text = (texts[0] if texts else (sup.text if sup else "")) or ""
            if not text.strip():
                skips.add(cut.id, "empty transcript")
                continue
            rid = cut.recording.id
            if rid not in recordings:
                path = rebase(cut.recording.sources[0].source, light)
                recordings[rid] = load_recording(path, rid.replace("/", "-"), skips)
            rec = recordings[rid]
            if rec is None:
                skips.add(cut.id, "recording unusable (see its own entry)")
                continue
            cid = cut.id.replace("/", "-")
            new_sup = fastcopy(sup, id=cid, recording_id=rec.id, text=text.strip())
            speech = MonoCut(id=cid, start=cut.start, duration=cut.duration, channel=0,
                             recording=rec, supervisions=[new_sup])
            data.cuts.append(speech)
            data.supervisions.append(new_sup)
            if rec.id not in seen_rec:
                seen_rec.add(rec.id)
                data.recordings.append(rec)
            by_spk[new_sup.speaker].append(cid)
        rng = random.Random(seed)
        for cut in data.cuts:
            ref = other_utterance(rng, by_spk[cut.supervisions[0].speaker], [cut.id])
            if ref is None:
                skips.add(cut.id, "VC: no other utterance of the speaker in the subset")
                continue
            data.add_example(task_example(cut, "vc", {"target": cut.id, "speaker_ref": ref},
                                          text=cut.supervisions[0].text))
        return {"train": data}

    return run_preparation("libriheavy", output_dir,
                           {"version": VERSION, "manifest": str(manifest.resolve()),
                            "librilight_dir": str(light.resolve()), "subset": subset,
                            "hours": hours, "seed": seed}, [manifest], build, force)
