"""Add USTokens to a cut manifest: ``ustokens`` TemporalArray (int16 ids, frame_shift 0.04 s)
stored in HDF5, plus ``ustokenizer`` (short hash of the tokenizer file) on every cut.

  python -m dualspeech.bin.extract_ustokens --checkpoint exp/ustokenizer_mini/final.pt \\
      --in-cuts data/cuts/mini_cuts_train.jsonl.gz --out-cuts dump/ustokens/mini_cuts_train.jsonl.gz \\
      [--nj 4 --job 2]

Loads Whisper and the tokenizer once (never the LLM), batches cuts by duration, runs on the
GPU when there is one. Work is split into shards (cut i belongs to shard i % nj + 1) and each
shard into chunks; a chunk's HDF5 file and manifest are renamed into place when complete, so a
killed run continues with the first unfinished chunk. Whoever completes the last chunk merges
everything, in input order, into --out-cuts and writes a sidecar ``<out>.ustokens.json`` with
the tokenizer hash and the skipped cuts. Without --job all shards run in this process.

Skipped (counted and listed in the sidecar): unreadable audio, non-finite samples, audio
shorter than one token (0.04 s). Other sample rates are resampled; audio over 30 s is encoded
in 30 s windows whose tokens are concatenated; silence is tokenized normally.
"""
from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

import torch
from lhotse import CutSet
from lhotse.features.io import NumpyHdf5Writer
from lhotse.utils import fastcopy
from tqdm import tqdm

from dualspeech.data.manifest_io import write_manifest
from dualspeech.tokenizers.ustokenizer.checkpoint import load_tokenizer
from dualspeech.tokenizers.ustokenizer.extract import tokenize_cuts
from dualspeech.tokenizers.ustokenizer.model import FRAME_SHIFT
from dualspeech.utils.io import atomic_path, atomic_write_text, short_hash
from dualspeech.utils.logs import setup_logging

log = logging.getLogger("dualspeech.extract_ustokens")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.extract_ustokens", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="final.pt written by train_ustokenizer")
    p.add_argument("--in-cuts", required=True, help="input cut manifest (.jsonl.gz)")
    p.add_argument("--out-cuts", required=True, help="output cut manifest with ustokens (.jsonl.gz)")
    p.add_argument("--storage-dir", help="where token arrays go (default: next to --out-cuts, "
                   "<name>_ustokens/)")
    p.add_argument("--nj", type=int, default=1, help="number of shards")
    p.add_argument("--job", type=int, help="run only this shard (1..nj); default: all shards")
    p.add_argument("--chunk-size", type=int, default=500, help="cuts per resumable chunk")
    p.add_argument("--max-duration", type=float, default=300.0,
                   help="seconds of encoder input per batch (a padded cut counts 30 s)")
    p.add_argument("--max-batch", type=int, default=64, help="cuts per batch at most")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    p.add_argument("--num-workers", type=int, default=0, help="audio loading processes")
    args = p.parse_args(argv)
    if args.nj < 1 or (args.job is not None and not 1 <= args.job <= args.nj):
        p.error(f"need nj >= 1 and 1 <= job <= nj (got nj={args.nj}, job={args.job})")
    if args.chunk_size < 1:
        p.error("--chunk-size must be >= 1")
    return args


def out_stem(path: Path) -> str:
    return path.name.split(".jsonl")[0]


class Extraction:
    """Shard / chunk bookkeeping of one (checkpoint, input manifest, nj) combination."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out_cuts = Path(args.out_cuts)
        self.tok_hash = short_hash(args.checkpoint)
        self.cuts = list(CutSet.from_file(args.in_cuts))
        dup = [k for k, n in Counter(c.id for c in self.cuts).items() if n > 1]
        if dup:
            raise ValueError(f"{args.in_cuts}: duplicate cut ids {dup[:5]}; ids must be unique")
        storage = Path(args.storage_dir or self.out_cuts.parent / f"{out_stem(self.out_cuts)}_ustokens")
        self.work = storage / f"{self.tok_hash}-{short_hash(args.in_cuts)}-nj{args.nj}"
        self.order = {c.id: i for i, c in enumerate(self.cuts)}
        self._tokenizer = None

    def chunks(self, job: int) -> list[list]:
        shard = self.cuts[job - 1:: self.args.nj]
        size = self.args.chunk_size
        return [shard[i:i + size] for i in range(0, len(shard), size)]

    def name(self, job: int, chunk: int) -> str:
        return f"shard{job:04d}-chunk{chunk:06d}"

    def done_marker(self, job: int, chunk: int) -> Path:
        return self.work / f"{self.name(job, chunk)}.done.json"

    def tokenizer(self):
        if self._tokenizer is None:
            dev = self.args.device
            device = ("cuda" if torch.cuda.is_available() else "cpu") if dev == "auto" else dev
            self._tokenizer = load_tokenizer(self.args.checkpoint, device)
            log.info("tokenizer %s (%s) on %s, pad_to_30s=%s", self.args.checkpoint, self.tok_hash,
                     device, self._tokenizer.cfg.pad_to_30s)
        return self._tokenizer

    def run_job(self, job: int) -> None:
        chunks = self.chunks(job)
        todo = [i for i in range(len(chunks)) if not self.done_marker(job, i).exists()]
        if len(todo) < len(chunks):
            log.info("shard %d: %d of %d chunks already done", job, len(chunks) - len(todo), len(chunks))
        for i in tqdm(todo, desc=f"shard {job}/{self.args.nj}", unit="chunk"):
            self.run_chunk(job, i, chunks[i])

    def run_chunk(self, job: int, index: int, cuts: list) -> None:
        tokenizer, args = self.tokenizer(), self.args
        name = self.name(job, index)
        h5 = self.work / f"{name}.h5"
        skipped: dict[str, str] = {}
        done = []
        with atomic_path(h5) as tmp:
            with NumpyHdf5Writer(tmp) as writer:
                for cut, ids in tokenize_cuts(tokenizer, cuts, args.max_duration, args.max_batch,
                                              args.num_workers, skipped):
                    arr = writer.store_array(cut.id, ids, frame_shift=FRAME_SHIFT, temporal_dim=0,
                                             start=cut.start)
                    arr = fastcopy(arr, array=fastcopy(arr.array, storage_path=str(h5)))
                    done.append(cut.with_custom("ustokens", arr).with_custom("ustokenizer", self.tok_hash))
        done.sort(key=lambda c: self.order[c.id])
        write_manifest(done, self.work / f"{name}.jsonl.gz")
        atomic_write_text(self.done_marker(job, index),
                          json.dumps({"cuts": len(done), "skipped": skipped}) + "\n")
        if skipped:
            log.warning("%s: skipped %s", name, dict(Counter(skipped.values())))

    def complete(self) -> bool:
        return all(self.done_marker(j, i).exists() for j in range(1, self.args.nj + 1)
                   for i in range(len(self.chunks(j))))

    def up_to_date(self) -> bool:
        sidecar = sidecar_path(self.out_cuts)
        return (self.out_cuts.exists() and sidecar.exists()
                and json.loads(sidecar.read_text()).get("storage") == str(self.work))

    def merge(self) -> None:
        """All chunks -> --out-cuts in input order; every input cut is either there or skipped."""
        by_id, skipped = {}, {}
        for j in range(1, self.args.nj + 1):
            for i in range(len(self.chunks(j))):
                skipped.update(json.loads(self.done_marker(j, i).read_text())["skipped"])
                for cut in CutSet.from_file(self.work / f"{self.name(j, i)}.jsonl.gz"):
                    if cut.id in by_id:
                        raise RuntimeError(f"cut {cut.id} was tokenized twice")
                    by_id[cut.id] = cut
        missing = [c.id for c in self.cuts if c.id not in by_id and c.id not in skipped]
        if missing:
            raise RuntimeError(f"{len(missing)} cuts have no tokens and no skip reason: {missing[:5]}")
        out = [by_id[c.id] for c in self.cuts if c.id in by_id]
        write_manifest(out, self.out_cuts)
        info = {"tokenizer_checkpoint": str(self.args.checkpoint), "tokenizer_hash": self.tok_hash,
                "frame_shift": FRAME_SHIFT, "storage": str(self.work), "in_cuts": str(self.args.in_cuts),
                "num_in": len(self.cuts), "num_out": len(out),
                "skipped_counts": dict(Counter(skipped.values())), "skipped": skipped}
        atomic_write_text(sidecar_path(self.out_cuts), json.dumps(info, indent=2) + "\n")
        log.info("wrote %s: %d cuts with ustokens, %d skipped %s", self.out_cuts, len(out),
                 len(skipped), info["skipped_counts"])


def sidecar_path(out_cuts: str | Path) -> Path:
    out_cuts = Path(out_cuts)
    return out_cuts.with_name(f"{out_stem(out_cuts)}.ustokens.json")


def main(argv=None) -> None:
    setup_logging()
    args = parse_args(argv)
    ex = Extraction(args)
    if ex.up_to_date():
        log.info("%s is up to date (same tokenizer, input and nj); nothing to do", args.out_cuts)
        return
    for job in [args.job] if args.job else range(1, args.nj + 1):
        ex.run_job(job)
    if ex.complete():
        ex.merge()
    else:
        log.info("shard %d done; the run that finishes the last shard merges %s", args.job, args.out_cuts)


if __name__ == "__main__":
    main()
