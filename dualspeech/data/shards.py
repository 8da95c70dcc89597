"""Training shards: rendered task examples in Lhotse Shar layout, read with bounded open files.

Stage 5 writes every training set (``corpus:part``) once, per task, into ``<shards>/<corpus>_<part>/``::

    index.json                     format, encoding fingerprint, per task: shards + file sizes
    lengths.npz                    per task: LLM tokens, AcousticGPT frames, prompt length, target span
    <task>/cuts.000000.jsonl.gz    the task-example cuts (text fields, links, prompt_len, ...)
    <task>/input_ids.000000.tar    rendered + tokenized LLM input (``<id>.npy`` int32, Shar "numpy")
    <task>/acoustic_tokens.000000.tar, speaker_embedding.000000.tar   (generation tasks only)
    <task>/done.000000.json        the shard's completion record (what resuming a killed run trusts)

The tars are plain Shar fields (``CutSet.from_shar(in_dir=<set>/<task>)`` reads a task), so the
layout is the ecosystem's. Training does not iterate them with lhotse's Shar reader, which only
streams a shard front to back: the sampler needs examples by index (token-budget buckets, exact
resume), so :class:`ShardReader` indexes a tar's members once when it opens it and keeps at most
``max_open`` shards open (an LRU): a worker's open files stay bounded whatever the corpus size.

``index.json`` records the encoding fingerprint (tokenizer vocabulary, speech vocabulary, prompt
templates): training refuses shards rendered for another tokenizer. Start-up checks that every
shard file exists with the size written (a missing or truncated shard is named).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import weakref
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dualspeech.data.tasks import TASKS
from dualspeech.utils.io import atomic_write_text
from dualspeech.utils.procs import die_with_parent
from dualspeech.utils.stamp import Stamp

FORMAT = "dualspeech-shar-1"
FIELDS = ("input_ids", "acoustic_tokens", "speaker_embedding")


class ShardError(RuntimeError):
    """A shard set that is missing, incomplete, damaged or rendered for another model."""


def set_dir(root: str | Path, corpus: str, part: str) -> Path:
    return Path(root) / f"{corpus}_{part}"


def task_fields(task: str) -> tuple[str, ...]:
    return FIELDS if TASKS[task].kind == "generation" else FIELDS[:1]


def shard_files(task: str, k: int) -> dict[str, str]:
    """Field -> file name (relative to the set dir) of shard ``k`` of ``task``."""
    out = {"cuts": f"{task}/cuts.{k:06d}.jsonl.gz"}
    out.update({f: f"{task}/{f}.{k:06d}.tar" for f in task_fields(task)})
    return out


def encoding_fingerprint(templates) -> dict:
    """Identity of what turns an example into ids: tokenizer vocabulary (with the speech tokens),
    speech vocabulary settings and prompt templates. Equal fingerprints give equal ids."""
    tok = templates.tok
    vocab = sorted(tok.get_vocab().items())
    h = hashlib.sha256(json.dumps(vocab).encode())
    layout = asdict(templates.cfg)
    if layout["format"] == "ours":   # the key came later: shards written before it stay valid
        del layout["format"]
    h.update(json.dumps({"templates": layout, "prompts": templates.prompts,
                         "bos": templates.bos, "eos": templates.eos_id,
                         "speech": asdict(templates.vocab.cfg),
                         "chat": getattr(tok, "chat_template", None) if templates.cfg.chat_template
                         else None}, sort_keys=True, default=str).encode())
    return {"sha256": h.hexdigest()[:20], "tokenizer": getattr(tok, "name_or_path", "") or "",
            "vocab_size": len(vocab), "speech_field": templates.vocab.cfg.field,
            "speech_tokens": templates.vocab.cfg.num_tokens}


# ------------------------------------------------------------------------------------ reading
class ShardSet:
    """One written set: its index and per-example arrays (small: five int32 per example)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        index = self.path / "index.json"
        if not index.is_file():
            raise ShardError(f"{index} not found: write the training shards first (recipe stage 5, "
                             "python -m dualspeech.bin.write_shards), or the run that wrote them "
                             "did not finish")
        self.index = json.loads(index.read_text())
        if self.index.get("format") != FORMAT:
            raise ShardError(f"{index}: format {self.index.get('format')!r}, expected {FORMAT!r} "
                             "(re-run stage 5)")
        self.shard_size = int(self.index["shard_size"])
        with np.load(self.path / "lengths.npz") as z:
            self.arrays = {k: z[k] for k in z.files}
        self.tasks = [t for t, v in self.index["tasks"].items() if v["num_examples"]]

    def check_files(self) -> None:
        """Every shard file exists with the size it was written with."""
        for task, info in self.index["tasks"].items():
            for k, shard in enumerate(info["shards"]):
                for name, size in shard["sizes"].items():
                    path = self.path / name
                    if not path.is_file():
                        raise ShardError(f"shard file {path} is missing (shard {k} of {task}); "
                                         "re-run stage 5 to rewrite it")
                    if path.stat().st_size != size:
                        raise ShardError(f"shard file {path} has {path.stat().st_size} bytes, "
                                         f"{size} were written: truncated or changed; re-run "
                                         "stage 5 with --force")

    def check_encoding(self, fingerprint: dict) -> None:
        have = self.index["encoding"]
        if have["sha256"] != fingerprint["sha256"]:
            raise ShardError(
                f"{self.path} was rendered for another tokenizer/templates ({have}) than this "
                f"model's ({fingerprint}); re-run stage 5 (write_shards) with this training config")

    def array(self, task: str, name: str) -> np.ndarray:
        return self.arrays[f"{task}.{name}"]


class ShardReader:
    """Reads examples ``(set, task, index)`` from shard tars; at most ``max_open`` shards (a few
    files each) are open at a time, least recently used closed first."""

    def __init__(self, max_open: int = 12):
        self.max_open = max_open
        self._open: OrderedDict = OrderedDict()   # (set path, task, k) -> {field: (file, members)}
        _READERS.add(self)

    def __getstate__(self):          # DataLoader workers start with nothing open
        return {"max_open": self.max_open, "_open": OrderedDict()}

    def open_files(self) -> int:
        return sum(len(v) for v in self._open.values())

    def close(self) -> None:
        while self._open:
            self._evict()

    def _evict(self) -> None:
        _, fields = self._open.popitem(last=False)
        for f, _ in fields.values():
            f.close()

    def _shard(self, shards: ShardSet, task: str, k: int) -> dict:
        key = (str(shards.path), task, k)
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        while len(self._open) >= self.max_open:
            self._evict()
        fields = {}
        try:
            for field, name in shard_files(task, k).items():
                if field == "cuts":
                    continue
                fields[field] = _index_tar(shards.path / name)
        except BaseException:
            for f, _ in fields.values():
                f.close()
            raise
        self._open[key] = fields
        return fields

    def read(self, shards: ShardSet, task: str, i: int) -> dict[str, np.ndarray]:
        """The stored arrays of example ``i`` of ``task``."""
        k, pos = divmod(i, shards.shard_size)
        out = {}
        for field, (f, members) in self._shard(shards, task, k).items():
            if pos >= len(members):
                raise ShardError(f"{f.name} holds {len(members)} examples, index.json says more "
                                 f"(example {i} of {task}); re-run stage 5 with --force")
            offset, size = members[pos]
            f.seek(offset)
            data = f.read(size)
            if len(data) != size:
                raise ShardError(f"{f.name}: truncated (member {pos}); re-run stage 5 with --force")
            out[field] = _npy(data)
        return out


_NPY_HEADER = re.compile(r"\{'descr': '([<>|=]?\w+)', 'fortran_order': False, 'shape': \(([\d, ]*)\), \}")


def _npy(data: bytes) -> np.ndarray:
    """Array from ``.npy`` bytes; parses the header np.save writes directly (np.load's literal
    eval of it was a third of the reading time), anything else goes through np.load."""
    if data[:8] == b"\x93NUMPY\x01\x00":
        end = 10 + int.from_bytes(data[8:10], "little")
        m = _NPY_HEADER.match(data[10:end].decode("latin1"))
        if m:
            shape = tuple(int(x) for x in m.group(2).split(",") if x.strip())
            return np.frombuffer(bytearray(data), dtype=np.dtype(m.group(1)),
                                 offset=end).reshape(shape)   # writable
    return np.load(io.BytesIO(data), allow_pickle=False)


_READERS: "weakref.WeakSet[ShardReader]" = weakref.WeakSet()


def _close_inherited() -> None:
    """In a forked child (a DataLoader worker), close the shards the parent had open: a worker
    then holds only what it opens itself."""
    for reader in list(_READERS):
        reader.close()


os.register_at_fork(after_in_child=_close_inherited)


def _index_tar(path: Path):
    """(open file, [(data offset, size)] of its ``.npy`` members in order). Walks the 512-byte
    headers itself (tarfile's parsing was most of the cost of opening a shard)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise ShardError(f"shard file {path} is missing; re-run stage 5") from None
    try:
        members = _npy_members(f)
    except (ValueError, EOFError) as e:
        f.close()
        raise ShardError(f"shard file {path} is unreadable ({e}): truncated or damaged; re-run "
                         "stage 5 with --force") from None
    return f, members


def _npy_members(f) -> list[tuple[int, int]]:
    size_total = os.fstat(f.fileno()).st_size
    members, pos, long_name = [], 0, None
    while True:
        header = os.pread(f.fileno(), tarfile.BLOCKSIZE, pos)
        if len(header) < tarfile.BLOCKSIZE:
            raise EOFError(f"tar header at byte {pos} cut short")
        if header == tarfile.NUL * tarfile.BLOCKSIZE:
            return members
        if sum(header[:148]) + sum(header[156:]) + 8 * 32 != int(header[148:156].strip(b"\0 ") or 0, 8):
            raise ValueError(f"bad tar header checksum at byte {pos}")
        size = int(header[124:136].strip(b"\0 ") or 0, 8)
        data = pos + tarfile.BLOCKSIZE
        if data + size > size_total:
            raise EOFError(f"tar member at byte {pos} cut short")
        kind = header[156:157]
        if kind == tarfile.GNUTYPE_LONGNAME:
            long_name = os.pread(f.fileno(), size, data).rstrip(b"\0")
        elif kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
            name = long_name or header[:100].rstrip(b"\0")
            if name.endswith(b".npy"):
                members.append((data, size))
            long_name = None
        pos = data + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


# ------------------------------------------------------------------------------------ writing
_JOB = None     # (writer, make_records) of the running write_all, inherited by forked workers


def _write_unit(unit: tuple[str, int]) -> None:
    writer, make_records = _JOB
    writer.write_shard(*unit, make_records(*unit))


def _placeholder(shape) -> dict:
    """The Shar manifest of an array stored in the field's tar (what lhotse's writer records)."""
    return {"storage_type": "shar", "storage_path": "", "storage_key": "", "shape": list(shape)}


def _tar_member(f, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    f.write(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
    f.write(data)
    f.write(b"\0" * (-len(data) % tarfile.BLOCKSIZE))


def _write_array(f, key: str, arr: np.ndarray) -> None:
    """``<key>.npy`` + ``<key>.json`` members, as lhotse's Shar ``ArrayTarWriter`` (numpy)
    writes them; done here with plain tar headers because its per-member PAX headers made
    writing the shards several times slower."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    _tar_member(f, f"{key}.npy", buf.getvalue())
    _tar_member(f, f"{key}.json", (json.dumps(_placeholder(arr.shape)) + "\n").encode())


class ShardWriter:
    """Writes one set's shards; resumable: a shard counts as written once its ``done`` record
    exists and its files have the recorded sizes, so a killed run redoes only unfinished shards.
    ``writing.json`` (a ``dualspeech.utils.stamp`` claim) holds the inputs and settings: other
    ones are refused unless ``force``. Each file is written under a temp name and renamed;
    ``index.json`` comes last."""

    def __init__(self, path: str | Path, identity: dict, shard_size: int, force: bool = False):
        self.path, self.identity, self.shard_size = Path(path), identity, shard_size
        if shard_size < 1:
            raise ValueError(f"shard size must be >= 1, got {shard_size}")
        stamp = Stamp(self.path / "writing.json", {"format": FORMAT, "shard_size": shard_size, **identity})
        if stamp.claim(force, "shards of other inputs or settings", "rewrite them", ShardError):
            if self.path.exists():              # --force, or shards of unknown inputs: not reused
                import shutil

                shutil.rmtree(self.path)
            stamp.write()

    def _done_path(self, task: str, k: int) -> Path:
        return self.path / task / f"done.{k:06d}.json"

    def done(self, task: str, k: int) -> dict | None:
        """The completion record of shard ``k`` of ``task`` when it is fully written."""
        path = self._done_path(task, k)
        if not path.is_file():
            return None
        rec = json.loads(path.read_text())
        for name, size in rec["sizes"].items():
            p = self.path / name
            if not p.is_file() or p.stat().st_size != size:
                return None
        return rec

    def write_shard(self, task: str, k: int, records: list[dict]) -> dict:
        """``records``: {"cut", "input_ids", "prompt_len", "target_span", and for generation
        tasks "acoustic_tokens", "speaker_embedding"} in example order."""
        import gzip

        files = shard_files(task, k)
        (self.path / task).mkdir(exist_ok=True)
        sizes = {}
        for field, name in files.items():
            final = self.path / name
            tmp = final.with_name(final.name + ".tmp")
            if field == "cuts":
                with gzip.open(tmp, "wt", compresslevel=1) as f:
                    for r in records:
                        d = r["cut"].to_dict()
                        d["custom"] = {**(d.get("custom") or {}), "prompt_len": int(r["prompt_len"]),
                                       **{fl: _placeholder(r[fl].shape) for fl in task_fields(task)}}
                        f.write(json.dumps(d) + "\n")
            else:
                with open(tmp, "wb") as f:
                    for r in records:
                        _write_array(f, r["cut"].id, np.ascontiguousarray(r[field]))
                    f.write(b"\0" * 1024)                      # end-of-archive blocks
            tmp.replace(final)
            sizes[name] = final.stat().st_size
        rec = {"n": len(records), "sizes": sizes,
               "len": [len(r["input_ids"]) for r in records],
               "agpt": [len(r["acoustic_tokens"]) if "acoustic_tokens" in r else 0
                        for r in records],
               "prompt": [int(r["prompt_len"]) for r in records],
               "span": [list(r["target_span"] or (0, 0)) for r in records]}
        atomic_write_text(self._done_path(task, k), json.dumps(rec))
        return rec

    def write_all(self, units: list[tuple[str, int]], make_records, nj: int = 1) -> int:
        """Write the shards ``(task, k)`` not written yet, ``make_records(task, k)`` giving their
        records, in ``nj`` forked processes; returns how many were written."""
        todo = [u for u in units if self.done(*u) is None]
        if nj <= 1 or len(todo) <= 1:
            for task, k in todo:
                self.write_shard(task, k, make_records(task, k))
            return len(todo)
        import multiprocessing as mp

        global _JOB
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")   # tokenizers and fork
        _JOB = (self, make_records)
        try:                                # a killed writer leaves no worker writing its shards
            with mp.get_context("fork").Pool(nj, die_with_parent, (os.getpid(),)) as pool:
                for _ in pool.imap_unordered(_write_unit, todo):
                    pass
        finally:
            _JOB = None
        return len(todo)

    def finish(self, num_examples: dict[str, int], encoding: dict, extra: dict) -> Path:
        """Check every shard is written, then write ``lengths.npz`` and ``index.json``."""
        arrays, tasks = {}, {}
        for task, n in num_examples.items():
            n_shards = -(-n // self.shard_size)
            recs = [self.done(task, k) for k in range(n_shards)]
            missing = [k for k, r in enumerate(recs) if r is None]
            if missing:
                raise ShardError(f"{self.path}/{task}: shards {missing[:10]} not written")
            got = sum(r["n"] for r in recs)
            if got != n:
                raise ShardError(f"{self.path}/{task}: shards hold {got} examples, expected {n}")
            for key in ("len", "agpt", "prompt", "span"):
                arrays[f"{task}.{key}"] = np.asarray([v for r in recs for v in r[key]], dtype=np.int32)
            arrays[f"{task}.span"] = arrays[f"{task}.span"].reshape(-1, 2)
            tasks[task] = {"num_examples": n, "shards": [{"sizes": r["sizes"]} for r in recs]}
        tmp = self.path / "lengths.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.replace(self.path / "lengths.npz")
        index = {"format": FORMAT, "shard_size": self.shard_size, "encoding": encoding,
                 "tasks": tasks, **extra}
        atomic_write_text(self.path / "index.json", json.dumps(index, indent=1))
        return self.path / "index.json"
