"""Benchmark registry: ``python -m dualspeech.bin.bench NAME``.

A benchmark is a function ``fn(argv: list[str]) -> None`` registered with ``@register(name,
help)`` in a module of this package. It prints a readable table and, as its LAST line,
``key=value`` with the headline ratio measured side by side in the same run.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from dualspeech.utils.registry import registrar

BENCHMARKS: dict[str, tuple[Callable[[list[str]], None], str]] = {}


_add = registrar(BENCHMARKS, "benchmark")


def register(name: str, help: str):
    def wrap(fn):
        _add(name)((fn, help))
        return fn
    return wrap


def discover() -> dict[str, tuple[Callable[[list[str]], None], str]]:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return BENCHMARKS
