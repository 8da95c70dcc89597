"""Benchmark registry: ``python -m dualspeech.bin.bench NAME``.

A benchmark is a function ``fn(argv: list[str]) -> None`` registered with ``@register(name,
help)`` in a module of this package. It prints a readable table and, as its LAST line,
``key=value`` with the headline ratio measured side by side in the same run.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

BENCHMARKS: dict[str, tuple[Callable[[list[str]], None], str]] = {}


def register(name: str, help: str):
    def wrap(fn):
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = (fn, help)
        return fn
    return wrap


def discover() -> dict[str, tuple[Callable[[list[str]], None], str]]:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return BENCHMARKS
