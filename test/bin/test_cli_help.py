"""Every entry point under dualspeech/bin answers --help with a usage text and exit code 0."""
from __future__ import annotations

import importlib
import pkgutil

import pytest

import dualspeech.bin

ENTRY_POINTS = sorted(m.name for m in pkgutil.iter_modules(dualspeech.bin.__path__))


def test_entry_points_exist():
    for name in ("bench", "make_mini_corpus", "prepare_corpus", "train_ustokenizer",
                 "extract_ustokens", "train", "decode", "score", "pretrained"):
        assert name in ENTRY_POINTS


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_help(name, capsys):
    module = importlib.import_module(f"dualspeech.bin.{name}")
    assert callable(getattr(module, "main", None)), f"dualspeech.bin.{name} has no main(argv)"
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out.lower() and len(out.splitlines()) >= 3
