"""Where pretrained weights live and the rules for getting them: the cache, pip packages' files,
the network switch, and the error a missing model raises.

Everything derived is written atomically under :func:`cache_dir` (``$DUALSPEECH_CACHE``,
default ``$XDG_CACHE_HOME/dualspeech`` or ``~/.cache/dualspeech``) and reused afterwards.
Nothing touches the network unless ``DUALSPEECH_ALLOW_NETWORK=1``; without it a missing
model raises :class:`PretrainedNotFound` naming the file to put where.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

CACHE_ENV = "DUALSPEECH_CACHE"
NETWORK_ENV = "DUALSPEECH_ALLOW_NETWORK"
DOWNLOAD_TOOL = "python tools/download_models.py"


class PretrainedNotFound(FileNotFoundError):
    """A model spec that cannot be resolved to local weights; the message says how to fix it."""


def network_allowed() -> bool:
    return os.environ.get(NETWORK_ENV, "") == "1"


def forbid_hub_network() -> None:
    """Make any Hugging Face call that slips through fail fast instead of downloading."""
    if network_allowed():
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported before us: it read the variable at import time
        constants.HF_HUB_OFFLINE = True


forbid_hub_network()


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dualspeech"


def cached_path(spec: str) -> Path:
    """Where ``spec``'s weights live (or will live) in the cache; no work, no checks."""
    scheme, _, name = str(spec).partition(":")
    if scheme == "whisper":
        return cache_dir() / "whisper" / f"{name}.pt"
    if scheme == "hf":
        return cache_dir() / "hf" / name.replace("/", "--")
    if scheme == "llm":
        return cache_dir() / "llm" / name
    if scheme == "random":
        return cache_dir() / "random" / (f"{name}.pt" if name.startswith("whisper") else name)
    raise PretrainedNotFound(f"{spec!r} is not a cached kind of model (whisper:, hf:, llm:, random:)")


def cached_file(target: Path, make) -> Path:
    """Return ``target``, first calling ``make(target)`` (which writes it atomically) if absent."""
    if not target.is_file():
        make(target)
    return target


def cached_dir(target: Path, make) -> Path:
    """Like :func:`cached_file` for a directory: ``make(tmp_dir)``, then rename it into place.

    Concurrent first uses (sharded jobs) each build their own temp dir; the first rename wins
    and the others discard theirs.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        make(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def package_dir(module: str, requirement: str) -> Path:
    """Directory of an installed package, found without importing it (imports can be heavy)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedNotFound(f"pip package for {module!r} is not installed; install "
                                 f"{requirement} with -c tools/constraints.txt (make install does)")
    return Path(next(iter(spec.submodule_search_locations)))

