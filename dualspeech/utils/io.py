"""Small file helpers shared by every stage: atomic writes and content hashes."""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    Keeps the final file's suffix (``x.tmp0000123.jsonl.gz``) so writers that pick a format by
    extension (lhotse, soundfile) still work. A crash leaves no half-written output behind.
    The pid is zero-padded to pid_max's 7 digits: gzip writes the temp name into its header, so
    a name whose length followed the pid gave the same content a different file size in
    another process (and stamps record sizes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}.tmp{os.getpid():07d}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


_TEMP = re.compile(r"^\..+\.tmp(\d+)(\.[^/]*)?$")   # the temp names atomic_path gives


def remove_stale_temps(directory: str | os.PathLike) -> int:
    """Delete the temp files of ``atomic_path`` writers that were killed mid-write (a SIGKILL
    skips their clean-up) from ``directory``; a live writer's file stays. Returns how many."""
    removed = 0
    for path in Path(directory).glob(".*.tmp*"):
        m = _TEMP.match(path.name)
        if m and not _alive(int(m.group(1))):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return not Path("/proc/self").exists()   # no procfs: trust kill(0); else it just ended


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically, through a file object: given a path, torch names the archive's
    root after the file, so the temp name (with its pid) would make every save different bytes."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def short_hash(path: str | os.PathLike) -> str:
    """First 12 hex digits of the file's sha256: the id recorded next to extracted tokens."""
    return file_sha256(path)[:12]



def state_hash(state: dict) -> str:
    """First 12 hex digits of the sha256 of a state dict's names, dtypes, shapes and values:
    the identity of weights however they were serialised (a checkpoint converted anew on
    another machine may differ in bytes, not in this)."""
    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]
