"""Sharded, resumable extraction of per-cut arrays into lhotse custom fields.

Shared by every token/embedding extractor (``extract_ustokens``, ``extract_acoustic``,
``extract_speaker``, ``extract_hubert``; any extractor that maps cuts to numpy arrays can use
it). How it works:

* the input cuts are split into ``nj`` shards (cut ``i`` goes to shard ``i % nj``); a job
  handles one shard (``--job J``) or all of them in turn (no ``--job``);
* each shard is processed in chunks of ``--chunk-size`` cuts; the extractor gets a whole chunk
  and batches it as it likes (``--batch-size``; USTokens also by duration); a chunk writes one
  HDF5 file of arrays and one cut manifest, both atomically, so a killed job resumes at the
  first missing chunk and no half-written file is ever referenced;
* temporal arrays (tokens) are stored with the cut's ``start``, so ``cut.load_custom`` reads
  them right for cuts that begin inside a longer recording (LibriHeavy);
* ``<storage-dir>/meta.json`` (a ``dualspeech.utils.stamp`` record) holds the field, the
  extractor identity (model name + checkpoint hash + settings) and the input cut ids; a re-run
  with a different extractor or input is an error naming what changed, unless ``--force``
  (which discards the old chunks);
* when every chunk of every shard exists, the job that finishes last merges them into
  ``--out-cuts``: the input cuts (input order) with the field attached, plus
  ``<field>_source`` = the extractor identity. Cuts whose audio could not be used are logged
  with a count per reason, listed with their reason in ``<storage-dir>/skipped.tsv`` and left
  without the field. A re-run after the merge leaves ``--out-cuts`` untouched (``meta.json``
  then also records the size and sha256 of what the merge wrote).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from dualspeech.audio import AudioError, load_cut_audio
from dualspeech.utils.io import atomic_path, atomic_write_text
from dualspeech.utils.stamp import Stamp

log = logging.getLogger(__name__)

# extract(chunk of cuts, skipped) -> (cut, array) for every usable cut, in any order; unusable
# ones go into ``skipped`` as {cut id: reason}
Extractor = Callable[[list, dict], Iterable[tuple[object, np.ndarray]]]


def add_extraction_args(parser: argparse.ArgumentParser, batch_size: int = 16) -> None:
    """The options every extractor shares (input/output, shards, chunks, batch, device)."""
    parser.add_argument("--cuts", required=True, help="input speech cuts (lhotse .jsonl.gz)")
    parser.add_argument("--out-cuts", default=None,
                        help="output cuts with the field attached (default: update --cuts in place)")
    parser.add_argument("--storage-dir", required=True,
                        help="where the arrays (HDF5 per chunk) and meta.json are written")
    parser.add_argument("--nj", type=int, default=1, help="number of shards")
    parser.add_argument("--job", type=int, default=None,
                        help="shard to process (0..nj-1); default: all shards in this process")
    parser.add_argument("--chunk-size", type=int, default=500,
                        help="cuts per resumable chunk (one HDF5 file + manifest each)")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="cuts per model call")
    parser.add_argument("--force", action="store_true", help="discard earlier outputs and redo all")
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (cuda when there is one), cpu, cuda, cuda:1 ...")


def resolve_device(name: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def token_dtype(codebook_size: int):
    """Storage type of token ids: int16 (every codebook here), int32 beyond 32767 codes."""
    return np.int16 if codebook_size <= np.iinfo(np.int16).max else np.int32


def cut_waves(cuts: list, sample_rate: int, min_samples: int, skipped: dict) -> list[tuple]:
    """(cut, mono float32 wave at ``sample_rate``) for every cut whose audio is usable."""
    from lhotse.audio.utils import AudioLoadingError

    out = []
    for cut in cuts:
        try:
            wave = load_cut_audio(cut, sample_rate)
        except (AudioError, AudioLoadingError, OSError, ValueError, RuntimeError) as e:
            log.warning("cut %s: unreadable audio (%s)", cut.id, e)
            skipped[cut.id] = "unreadable"
            continue
        if not np.isfinite(wave).all():
            skipped[cut.id] = "non_finite"
        elif len(wave) < min_samples:
            skipped[cut.id] = "too_short"
        else:
            out.append((cut, np.ascontiguousarray(wave, dtype=np.float32)))
    return out


def batched(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def wave_batches(cuts: list, batch_size: int, sample_rate: int, min_samples: int,
                 skipped: dict) -> Iterable[tuple[list, list[np.ndarray]]]:
    """(cuts, waves) model batches of the usable cuts, loaded one batch at a time (a chunk's
    audio is never all in memory); unusable cuts go into ``skipped``."""
    for batch in batched(cuts, batch_size):
        usable = cut_waves(batch, sample_rate, min_samples, skipped)
        if usable:
            yield [c for c, _ in usable], [w for _, w in usable]


def _ids_hash(cuts: list) -> str:
    return hashlib.sha256("\n".join(c.id for c in cuts).encode()).hexdigest()[:16]


def _chunk_name(field: str, job: int, nj: int, chunk: int) -> str:
    return f"{field}.{job}-of-{nj}.{chunk:05d}"


def run_extraction(args: argparse.Namespace, field: str, identity: str, settings: dict,
                   extract: Extractor, frame_shift: float | None, dtype) -> Path | None:
    """Run the shard(s) selected by ``args``; merge when complete. Returns ``--out-cuts`` once
    merged, else None (other shards still running)."""
    from lhotse import CutSet
    from lhotse.features.io import NumpyHdf5Writer
    from tqdm import tqdm

    if args.nj < 1 or (args.job is not None and not 0 <= args.job < args.nj):
        raise ValueError(f"--job must be in 0..{args.nj - 1} (got --nj {args.nj} --job {args.job})")
    cuts = list(CutSet.from_file(args.cuts))
    if not cuts:
        raise ValueError(f"{args.cuts} holds no cuts")
    dup = [k for k, n in Counter(c.id for c in cuts).items() if n > 1]
    if dup:
        raise ValueError(f"{args.cuts}: duplicate cut ids {dup[:5]}; ids must be unique")
    storage = Path(args.storage_dir)
    stamp = Stamp(storage / "meta.json", {
        "field": field, "identity": identity, "settings": settings, "frame_shift": frame_shift,
        "nj": args.nj, "chunk_size": args.chunk_size, "cut_ids": _ids_hash(cuts), "num_cuts": len(cuts)})
    if stamp.claim(args.force, "outputs of a different extraction", "redo it or use another --storage-dir"):
        if args.force:      # without a record, the parts of jobs running beside this one are kept
            shutil.rmtree(storage / "parts", ignore_errors=True)
        stamp.write()
    chunks = {}  # (job, chunk) -> cuts
    for job in range(args.nj):
        shard = cuts[job::args.nj]
        for k, part in enumerate(batched(shard, args.chunk_size)):
            chunks[job, k] = part
    parts = storage / "parts"
    jobs = range(args.nj) if args.job is None else [args.job]
    for (job, k), part in chunks.items():
        name = _chunk_name(field, job, args.nj, k)
        if job not in jobs or (parts / f"{name}.jsonl.gz").exists():
            continue
        skipped: dict[str, str] = {}
        done = []
        h5 = parts / f"{name}.h5"
        with atomic_path(h5) as tmp, NumpyHdf5Writer(tmp) as writer:
            bar = tqdm(total=len(part), desc=f"{field} job {job} chunk {k}", unit="cut")
            for cut, arr in extract(part, skipped):
                arr = np.asarray(arr).astype(dtype, copy=False)
                if frame_shift:
                    stored = writer.store_array(cut.id, arr, frame_shift=frame_shift,
                                                temporal_dim=0, start=cut.start)
                else:
                    stored = writer.store_array(cut.id, arr)
                done.append((cut.id, stored))
                bar.update(1)
            bar.update(len(part) - bar.n)   # the skipped cuts
            bar.close()
        manifest = []
        for cid, stored in done:
            inner = stored.array if frame_shift else stored
            inner.storage_path = str(h5)
            manifest.append({"id": cid, "array": stored.to_dict()})
        for cid, reason in skipped.items():
            manifest.append({"id": cid, "skipped": reason})
        with atomic_path(parts / f"{name}.jsonl.gz") as tmp:
            _write_jsonl_gz(tmp, manifest)
    missing = [k for k in chunks
               if not (parts / f"{_chunk_name(field, k[0], args.nj, k[1])}.jsonl.gz").exists()]
    if missing:
        log.info("%d chunks still missing (other jobs); merge happens when all are done", len(missing))
        return None
    out_path = Path(args.out_cuts or args.cuts)
    if stamp.done(outputs=[out_path]):   # the manifest the last merge wrote: left byte-identical
        log.info("%s is up to date (merged from these chunks); nothing to do", out_path)
        return out_path
    _merge(args, cuts, chunks, field, identity, frame_shift, out_path)
    stamp.write(outputs=[out_path])
    return out_path


def _write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    import gzip

    with gzip.open(path, "wt") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _merge(args, cuts, chunks, field, identity, frame_shift, out_path: Path) -> None:
    import gzip

    from lhotse import CutSet
    from lhotse.array import Array, TemporalArray

    storage = Path(args.storage_dir)
    arrays, skipped = {}, {}
    for key in chunks:
        path = storage / "parts" / f"{_chunk_name(field, key[0], args.nj, key[1])}.jsonl.gz"
        with gzip.open(path, "rt") as f:
            for line in f:
                row = json.loads(line)
                if "skipped" in row:
                    skipped[row["id"]] = row["skipped"]
                else:
                    cls = TemporalArray if frame_shift else Array
                    arrays[row["id"]] = cls.from_dict(row["array"])
    out = []
    for cut in cuts:
        if cut.id in arrays:
            cut = cut.with_custom(field, arrays[cut.id]).with_custom(f"{field}_source", identity)
        out.append(cut)
    for reason, n in sorted(Counter(skipped.values()).items()):
        log.warning("%s: %d cuts skipped (%s); they have no %s (list: %s)", args.cuts, n, reason,
                    field, storage / "skipped.tsv")
    atomic_write_text(storage / "skipped.tsv", "".join(f"{cid}\t{reason}\n" for cid, reason in
                                                       sorted(skipped.items())))
    with atomic_path(out_path) as tmp:
        CutSet.from_cuts(out).to_file(tmp)
    log.info("wrote %s: %d of %d cuts with %s (%s)", out_path, len(arrays), len(cuts), field, identity)
