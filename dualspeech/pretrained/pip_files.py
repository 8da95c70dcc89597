"""Weights that pip packages ship as plain files: the speaker encoder (``speaker:resemblyzer``)
and the DNSMOS models (``dnsmos:speechmos``), found without importing the packages."""
from __future__ import annotations

from pathlib import Path

from dualspeech.pretrained.cache import PretrainedNotFound, package_dir

DNSMOS_FILES = ("sig_bak_ovr.onnx", "model_v8.onnx")


def resolve_speaker(name: str) -> Path:
    if name != "resemblyzer":
        raise PretrainedNotFound(f"unknown speaker:{name}; offline speaker encoders: "
                                 "speaker:resemblyzer, or pass a local checkpoint path")
    path = package_dir("resemblyzer", "resemblyzer==0.1.4 (with --no-deps)") / "pretrained.pt"
    if not path.is_file():
        raise PretrainedNotFound(f"{path} is missing; reinstall resemblyzer==0.1.4 --no-deps")
    return path


def resolve_dnsmos(name: str) -> Path:
    if name != "speechmos":
        raise PretrainedNotFound(f"unknown dnsmos:{name}; known: dnsmos:speechmos, or pass a dir "
                                 f"holding {' and '.join(DNSMOS_FILES)}")
    path = package_dir("speechmos", "speechmos==0.0.1.1") / "dnsmos_models"
    missing = [f for f in DNSMOS_FILES if not (path / f).is_file()]
    if missing:
        raise PretrainedNotFound(f"{path} lacks {missing}; reinstall speechmos==0.0.1.1")
    return path

