"""Write one training set's shards (recipe stage 5): join the checked task examples with their
speech cuts, render + tokenise every example once (``dualspeech.data.encoding``) and write them
in the shard layout of ``dualspeech.data.shards``, resumable per shard.

``python -m dualspeech.bin.write_shards`` is the command; benchmarks and tests call this module.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from dualspeech.data import token_identity
from dualspeech.data.encoding import encode_example, missing_field
from dualspeech.data.shards import ShardWriter, encoding_fingerprint, set_dir
from dualspeech.data.tasks import TASKS, speech_cut_ids, speech_manifest_name, task_manifest_name

log = logging.getLogger(__name__)


def content_sha256(path: Path) -> str:
    """sha256 of a manifest's content (decompressed: a rewritten .gz with the same lines but a
    new gzip timestamp is the same input, so a resumed stage 5 keeps its shards)."""
    import gzip
    import hashlib

    h = hashlib.sha256()
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_set(templates, acoustic_field: str, data_root: Path, corpus: str, part: str,
              out_root: Path, shard_size: int, force: bool, nj: int = 1,
              identities: dict[str, str] | None = None) -> dict[str, int]:
    """Write one set's shards; returns {task: examples written}. ``identities``: the token
    identities of the sets written before ({} at first): this set's must agree, and are added.
    Raises FileNotFoundError when the set's manifests are missing."""
    from lhotse import CutSet
    from lhotse.features.io import close_cached_file_handles

    cuts_path = data_root / "cuts" / speech_manifest_name(corpus, part)
    task_paths = {t: data_root / "tasks" / task_manifest_name(corpus, t, part) for t in TASKS}
    task_paths = {t: p for t, p in task_paths.items() if p.is_file()}
    if not cuts_path.is_file():
        raise FileNotFoundError(f"speech cuts {cuts_path} not found: run the earlier recipe stages")
    if not task_paths:
        raise FileNotFoundError(f"no task manifests {corpus}_<task>_{part}.jsonl.gz in "
                                f"{data_root}/tasks")
    fingerprint = encoding_fingerprint(templates)
    inputs = {p.name: content_sha256(p) for p in [cuts_path, *task_paths.values()]}
    writer = ShardWriter(set_dir(out_root, corpus, part),
                         {"encoding": fingerprint, "inputs": inputs, "acoustic_field": acoustic_field},
                         shard_size, force)
    speech = {c.id: c for c in CutSet.from_file(cuts_path)}
    mine = token_identity.cut_identities(speech.values(), str(cuts_path))
    if identities is not None:       # every set of one model must come from the same tokenizers
        identities.update(token_identity.merge(
            {"the sets before": identities, f"{corpus}:{part} ({cuts_path})": mine},
            "re-extract the tokens of every set with the same checkpoints "
            "(./run.sh --stage 3 --force true)"))
    sources = sorted({str(c.custom.get(f"{f}_source")) for c in speech.values() if c.custom
                      for f in (templates.vocab.cfg.field, acoustic_field)
                      if c.custom.get(f"{f}_source")})
    counts, dropped, jobs = {}, Counter(), {}
    for task, path in task_paths.items():
        examples = []
        for cut in CutSet.from_file(path):
            roles = {r: speech.get(cid) for r, cid in speech_cut_ids(cut).items()}
            roles = {r: c for r, c in roles.items() if c is not None}
            why = missing_field(task, roles, templates.vocab.cfg.field, acoustic_field)
            if why:
                dropped[f"{task}: {why}"] += 1
                continue
            examples.append((cut, roles))
        counts[task] = len(examples)
        jobs[task] = examples

    def make_records(task: str, k: int) -> list[dict]:
        records = [encode_example(templates, acoustic_field, task, cut, roles)
                   for cut, roles in jobs[task][k * shard_size:(k + 1) * shard_size]]
        close_cached_file_handles()          # lhotse keeps every HDF5 file it read open
        return records

    units = [(t, k) for t, exs in jobs.items() for k in range(-(-len(exs) // shard_size))]
    n = writer.write_all(units, make_records, nj)
    log.info("%s:%s: wrote %d of %d shards (the others were complete)", corpus, part, n, len(units))
    for reason, n in sorted(dropped.items()):
        log.warning("%s:%s: dropped %d examples (%s)", corpus, part, n, reason)
    writer.finish(counts, fingerprint, {"speech_token_sources": sources, "token_identities": mine,
                                        "dropped": dict(dropped)})
    return counts
