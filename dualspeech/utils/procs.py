"""Worker processes that end with the process that started them.

A SIGKILL cannot be caught, so a parent killed that way never stops its workers; without help
they run on as orphans and keep writing outputs that a re-run is rewriting. On Linux the kernel
can send a signal to a process when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere
these calls do nothing.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1   # <linux/prctl.h>


def die_with_parent(parent: int | None = None) -> None:
    """SIGKILL this process as soon as its parent dies. ``parent``: the pid the parent had
    (known to a forked worker); when the parent is already gone, exit now."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent is not None and os.getppid() != parent:   # died before prctl took effect
        os._exit(1)


def die_with_job_launcher() -> None:
    """A job started by utils/run_jobs.sh (it sets ``DS_JOB_ID``) ends with the shell that runs
    it, so killing the recipe, or only that shell, leaves none of its jobs behind. A command run
    by hand is left alone (``nohup`` keeps working)."""
    if os.environ.get("DS_JOB_ID"):
        die_with_parent()
