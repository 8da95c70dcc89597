"""Audio I/O without torchaudio: soundfile for files, soxr (via lhotse/librosa) for resampling."""
from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from dualspeech.utils.io import atomic_path


class AudioError(ValueError):
    """Audio that cannot be read or used."""


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return wave
    import librosa

    return librosa.resample(wave, orig_sr=sr_in, target_sr=sr_out, res_type="soxr_hq").astype(np.float32)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """soundfile gives [T, C]; lhotse gives [C, T]. Average channels either way."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        return wave
    channel_axis = 0 if wave.shape[0] < wave.shape[1] else 1
    return wave.mean(axis=channel_axis)


def load_audio(path: str | os.PathLike, sr: int | None = None) -> tuple[np.ndarray, int]:
    """Read a file as float32 mono, resampled to ``sr`` if given. Returns (wave, sample_rate)."""
    try:
        wave, file_sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as e:  # soundfile raises several types for corrupt or missing files
        raise AudioError(f"cannot read audio {path}: {e}") from e
    wave = to_mono(wave)
    if sr is not None and sr != file_sr:
        return resample(wave, file_sr, sr), sr
    return wave, file_sr


def load_cut_audio(cut, sr: int) -> np.ndarray:
    """Mono float32 samples of a lhotse cut at ``sr`` (lhotse resamples lazily)."""
    if cut.sampling_rate != sr:
        cut = cut.resample(sr)
    return to_mono(cut.load_audio())


def save_wav(path: str | os.PathLike, wave: np.ndarray, sr: int) -> None:
    """16-bit PCM wav, written atomically. Values are clipped to [-1, 1]."""
    wave = np.clip(np.asarray(wave, dtype=np.float32).reshape(-1), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), wave, sr, subtype="PCM_16")
