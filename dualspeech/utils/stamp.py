"""Is an output up to date? One answer for prepared corpora, training shards and token extraction.

A :class:`Stamp` is a JSON file next to what a run wrote. At its top level it holds the run's
parameters: everything the outputs depend on (arguments, a code version, fingerprints of the
inputs known before the run); so the extraction ``meta.json`` that other modules read for the
field, identity and sizes is a stamp too. Two keys are the stamp's own: ``outputs``, the size
and sha256 of every file the run wrote (paths relative to the stamp), and ``read``, the size and
mtime of files found only while running. Comparing parameters names the keys that changed.

Two ways to use one, for two kinds of work:

* :meth:`Stamp.done`: a rebuild-if-stale output (prepared manifests, a merged cut manifest) is
  up to date when the parameters are the same, no file it read changed and every recorded output
  still has its size and sha256; otherwise the run re-makes it, and the log says why.
* :meth:`Stamp.claim`: a resumable directory (shards, extraction chunks) keeps the finished work
  of an earlier run with the same parameters; other parameters are an error naming what changed,
  and ``--force`` discards the old work instead.

The recipe's stage markers (``utils/stage.sh``) are not stamps: they guard whole stages from the
shell, hash input file content and directory listings, and have a resume / repair / fresh mode
keyed to the per-job markers of ``utils/run_jobs.sh``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable

from dualspeech.utils.io import atomic_write_text, file_sha256

log = logging.getLogger(__name__)

OWN_KEYS = ("outputs", "read")     # the stamp's bookkeeping; every other top-level key is a parameter


def params_digest(params: dict) -> str:
    """Short stable hash of a JSON-able parameter dict."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def changed_keys(old: dict, new: dict) -> list[str]:
    """The keys whose values differ between two parameter dicts (present in one only included)."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


class Stamp:
    """The record at ``path`` of what a run was made from (``params``) and what it wrote."""

    def __init__(self, path: str | Path, params: dict):
        own = [k for k in OWN_KEYS if k in params]
        if own:
            raise ValueError(f"stamp parameters may not be named {own}: the stamp keeps them itself")
        self.path = Path(path)
        self.params = json.loads(json.dumps(params, default=str))   # as it reads back from the file
        self.digest = params_digest(params)

    def saved(self) -> dict | None:
        """The record on disk, None when there is none (or it is unreadable: then nothing of it
        is trusted)."""
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return saved if isinstance(saved, dict) else None

    def changed(self, saved: dict | None = None) -> list[str]:
        """The parameters that differ from the record's (all of them without a record). A stamp
        of an older layout has other keys, so it shows as changed, never as up to date."""
        saved = self.saved() if saved is None else saved
        old = {k: v for k, v in (saved or {}).items() if k not in OWN_KEYS}
        return changed_keys(old, self.params) if saved is not None else sorted(self.params)

    def damaged(self, saved: dict | None = None) -> list[Path]:
        """The outputs recorded by a run with these parameters that are now missing or differ
        from what it wrote (none without such a record): a writer that reuses existing files
        (the mini corpus's wavs) must re-make these, not keep them."""
        saved = self.saved() if saved is None else saved
        if saved is None or self.changed(saved):
            return []
        return [self._abs(rel) for rel, want in _listing(saved).items()
                if output_fingerprint(self._abs(rel)) != want]

    def done(self, force: bool = False, outputs: Iterable[str | Path] | None = None) -> bool:
        """True when the recorded outputs are up to date: same parameters, no recorded input
        changed (size, mtime, existence) and every recorded output has the size and sha256 it
        was written with. ``outputs``: when given, the record must list exactly these files.
        ``force`` is never up to date. Logs what changed (nothing on a first run)."""
        saved = None if force else self.saved()
        if saved is None or "outputs" not in saved:
            return False
        changed = self.changed(saved)
        if changed:
            log.info("%s: parameters changed since the last run (%s); re-making", self.path.name,
                     ", ".join(changed))
            return False
        if outputs is not None and self.previous_outputs(saved) != sorted(_resolved(p) for p in outputs):
            return False
        damaged = self.damaged(saved)
        if damaged:
            log.warning("%s: %d recorded output(s) missing or changed since they were written "
                        "(size / sha256), e.g. %s; re-making them", self.path.name, len(damaged),
                        damaged[0])
            return False
        read = [tuple(r) for r in saved.get("read", [])]
        now = input_fingerprint(p for p, _, _ in read)
        moved = [p for (p, *was), (_, *is_) in zip(read, now) if was != is_]
        if moved:
            log.info("%s: %d input(s) changed since the last run, e.g. %s; re-making",
                     self.path.name, len(moved), moved[0])
            return False
        return True

    def previous_outputs(self, saved: dict | None = None) -> list[Path]:
        """The outputs the last run recorded, resolved and sorted (none without a record)."""
        saved = self.saved() if saved is None else saved
        return sorted(self._abs(rel) for rel in _listing(saved or {}))

    def claim(self, force: bool, holds: str, fix: str, error: type[Exception] = RuntimeError) -> bool:
        """Before a resumable run into the stamp's directory. False: the record has these
        parameters, so the finished work is kept. True: the directory starts afresh (``force``, or
        no record); the caller removes the old work it must not reuse, then writes the record
        (:meth:`write`). A record of other parameters raises ``error``: "<dir> holds <holds>
        (changed: [...]); pass --force to <fix>"."""
        saved = None if force else self.saved()
        if saved is None:
            return True
        changed = self.changed(saved)
        if changed:
            raise error(f"{self.path.parent} holds {holds} (changed: {changed}); pass --force to {fix}")
        return False

    def write(self, outputs: Iterable[str | Path] | None = None,
              read: Iterable[str | Path] | None = None) -> None:
        """Record the parameters, and the files written (size + sha256) and read (size + mtime)."""
        record = dict(self.params)
        if outputs is not None:
            base = self.path.parent.resolve()
            record["outputs"] = {os.path.relpath(_resolved(p), base): output_fingerprint(p)
                                 for p in outputs}
        if read is not None:
            record["read"] = input_fingerprint(read)
        atomic_write_text(self.path, json.dumps(record, indent=1, sort_keys=True))

    def _abs(self, rel: str) -> Path:
        return _resolved(self.path.parent / rel)


def _resolved(path: str | Path) -> Path:
    return Path(path).resolve()


def _listing(saved: dict) -> dict[str, dict | None]:
    """A record's outputs as {relative path: fingerprint}; a stamp written before outputs were
    fingerprinted lists bare paths, whose fingerprint (None) never matches, so it is re-made."""
    outputs = saved.get("outputs", [])
    return dict(outputs) if isinstance(outputs, dict) else {rel: None for rel in outputs}


def output_fingerprint(path: str | Path) -> dict | None:
    """{"size", "sha256"} of a written file, None when it is gone."""
    try:
        return {"size": Path(path).stat().st_size, "sha256": file_sha256(path)}
    except FileNotFoundError:
        return None


def input_fingerprint(paths: Iterable[str | Path]) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of input files, (path, -1, -1) when absent: cheap change detection."""
    out = []
    for p in sorted({str(p) for p in paths}):
        try:
            st = Path(p).stat()
        except FileNotFoundError:
            out.append((p, -1, -1))
        else:
            out.append((p, st.st_size, st.st_mtime_ns))
    return out
