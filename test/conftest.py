"""Fixtures shared by the test suite. Everything a test needs it makes itself: speech comes from
espeak-ng, models are random tiny ones or the offline weights that pip packages ship."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dualspeech.audio import resample


def espeak_wave(text: str, voice: str = "en-us", sr: int = 16000, speed: int = 160,
                pitch: int = 50) -> np.ndarray:
    """Real speech from espeak-ng as float32 mono at ``sr``."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (tools/install.sh installs it)")
    out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                          "--stdout", text], check=True, capture_output=True).stdout
    import io

    wave, file_sr = sf.read(io.BytesIO(out), dtype="float32")
    return resample(wave, file_sr, sr)


@pytest.fixture
def make_speech(tmp_path: Path):
    """``make_speech(text, name="utt", voice="en-us", sr=16000) -> Path`` of a 16-bit wav."""
    def make(text: str, name: str = "utt", voice: str = "en-us", sr: int = 16000, **kw) -> Path:
        path = tmp_path / f"{name}.wav"
        sf.write(path, espeak_wave(text, voice, sr, **kw), sr, subtype="PCM_16")
        return path
    return make
