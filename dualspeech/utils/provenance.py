"""Which code made an output: the git commit of the checkout the package runs from.

Results tables name it, so a committed table says what it was made with. Results files
themselves (``RESULTS.md``, which the default demo writes into the tracked tree) do not count
as uncommitted changes.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]   # the checkout holding dualspeech/
UNKNOWN = "unknown (not a git checkout)"


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def source_commit() -> str:
    """``<12-hex commit>``, with `` + uncommitted changes`` when tracked files differ from it."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    if commit is None:
        return UNKNOWN
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)*RESULTS.md")
    return commit + (" + uncommitted changes" if changed else "")
