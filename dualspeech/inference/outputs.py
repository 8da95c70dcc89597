"""Decoding outputs of one test set: per-shard ``hyp`` files, wavs, merge into ``hyp.jsonl``.

Layout of ``<out_dir>/<test_set>/``::

    decode_config.yaml            the resolved decoding config (+ model path, shard count)
    shards/hyp.<k>of<n>.jsonl     one JSON record per finished example of shard k
    wav/<id>.wav                  generated speech (generation tasks; codec sample rate)
    prompt/<id>.wav               the speaker prompt used (16 kHz), for the SIM metric
    hyp.jsonl                     all shards merged, sorted by id (written once complete)
    text                          "<id> <text>" lines (understanding tasks), Kaldi style
    stats.json                    counts per status (ok, empty, no_eoa, ...)

A record is appended (and flushed) only after its wavs are written atomically, so a record
always points at complete files. On restart a torn last line (killed mid-write) is dropped
and every id already in the shard file is skipped.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from dualspeech.utils.io import atomic_write_text

log = logging.getLogger(__name__)


RETRY_STATUSES = ("no_output_path",)   # not final: a re-run decodes these examples


def shard_path(test_dir: Path, shard: int, num_shards: int) -> Path:
    return test_dir / "shards" / f"hyp.{shard}of{num_shards}.jsonl"


def read_records(path: Path) -> list[dict]:
    """Complete records of a (possibly torn) jsonl file."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s: dropping a torn line (interrupted run)", path)
    return out


class HypWriter:
    """Append-only ``hyp.<k>of<n>.jsonl`` record file of one decode shard; knows which ids are
    finished (not the training shards' ``data.shards.ShardWriter``)."""

    def __init__(self, path: Path):
        self.path = path
        records = read_records(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # rewrite without a torn tail before appending to it
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
        # an example that had no output path is decoded again once it has one (the newer
        # record wins in merge_shards)
        self.done = {r["id"] for r in records if r.get("status") not in RETRY_STATUSES}
        self._f = open(path, "a")

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        self.done.add(record["id"])

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def merge_shards(test_dir: Path, num_shards: int, expected_ids: list[str]) -> bool:
    """Write ``hyp.jsonl``, ``text`` and ``stats.json`` once every expected id has a record.

    Returns False (and writes nothing) while any shard is unfinished."""
    records: dict[str, dict] = {}
    for k in range(num_shards):
        for r in read_records(shard_path(test_dir, k, num_shards)):
            records[r["id"]] = r
    missing = [i for i in expected_ids if i not in records]
    if missing:
        log.info("%s: %d/%d examples decoded; merge waits for the other shards",
                 test_dir.name, len(expected_ids) - len(missing), len(expected_ids))
        return False
    ordered = [records[i] for i in sorted(expected_ids)]
    atomic_write_text(test_dir / "hyp.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
    texts = [f"{r['id']} {' '.join(r['text'].split())}\n" for r in ordered if "text" in r]
    if texts:
        atomic_write_text(test_dir / "text", "".join(texts))
    stats = {"n": len(ordered), "status": dict(Counter(r["status"] for r in ordered))}
    atomic_write_text(test_dir / "stats.json", json.dumps(stats, indent=2) + "\n")
    return True
