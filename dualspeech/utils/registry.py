"""One decorator for the name -> factory tables that configs select from (codecs, speaker
encoders, benchmarks): registering a name twice is a bug, so it fails loudly."""
from __future__ import annotations


def registrar(table: dict, kind: str):
    """``@registrar(TABLE, "codec")(name)`` stores the decorated object under ``name``."""
    def register(name: str):
        def wrap(obj):
            if name in table:
                raise ValueError(f"{kind} {name!r} registered twice")
            table[name] = obj
            return obj
        return wrap
    return register
