"""DNSMOS (no-reference MOS of Microsoft's DNS challenge) with onnxruntime on the speechmos files.

The two ONNX models that the ``speechmos`` wheel ships are run directly (no pandas/requests
dependency): ``sig_bak_ovr.onnx`` reads raw 16 kHz audio in 9.01 s windows and predicts raw
SIG/BAK/OVRL, which a fixed 2nd-order polynomial per score maps to the MOS scale;
``model_v8.onnx`` reads a 120-band log-mel of the same window and predicts P.808 MOS. Windows
hop by 1 s; clips shorter than one window are doubled until they fill it; a clip's score is
the mean over its windows. We report OVRL and P.808 (SIG and BAK are kept per utterance).
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from dualspeech.audio import load_audio

log = logging.getLogger(__name__)
SR = 16000
WINDOW = int(9.01 * SR)
HOP = SR
# Calibration polynomials of the (non-personalised) DNSMOS model, highest order first.
POLY_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
POLY_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
POLY_OVR = np.poly1d([-0.06766283, 1.11546468, 0.04602535])


class DNSMOS:
    def __init__(self, model_dir: str | Path | None = None):
        import onnxruntime as ort

        if model_dir is None:
            from dualspeech.pretrained import resolve

            model_dir = resolve("dnsmos:speechmos")
        model_dir = Path(model_dir)
        files = {name: model_dir / name for name in ("sig_bak_ovr.onnx", "model_v8.onnx")}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"DNSMOS model files missing: {missing} (pip install "
                                    "speechmos==0.0.1.1 ships them in speechmos/dnsmos_models)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.primary = ort.InferenceSession(str(files["sig_bak_ovr.onnx"]), opts,
                                            providers=["CPUExecutionProvider"])
        self.p808 = ort.InferenceSession(str(files["model_v8.onnx"]), opts,
                                         providers=["CPUExecutionProvider"])

    @staticmethod
    def windows(wave: np.ndarray) -> np.ndarray:
        """[W, 9.01 s] windows of a 16 kHz clip (repeated to at least one window)."""
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        if len(wave) == 0:
            raise ValueError("DNSMOS of an empty waveform")
        while len(wave) < WINDOW:   # doubled like the official DNSMOS script does
            wave = np.concatenate([wave, wave])
        n = int(np.floor(len(wave) / SR) - WINDOW / SR) + 1   # whole seconds, as the original
        return np.stack([wave[i * HOP: i * HOP + WINDOW] for i in range(n)
                         if len(wave[i * HOP: i * HOP + WINDOW]) == WINDOW])

    @staticmethod
    def p808_features(window: np.ndarray) -> np.ndarray:
        import librosa

        mel = librosa.feature.melspectrogram(y=window[:-160], sr=SR, n_fft=321, hop_length=160,
                                             n_mels=120)
        return ((librosa.power_to_db(mel, ref=np.max) + 40) / 40).T.astype(np.float32)

    def score_wave(self, wave: np.ndarray) -> dict[str, float]:
        """{'ovrl', 'sig', 'bak', 'p808'} of one 16 kHz clip."""
        wins = self.windows(wave)
        raw = self.primary.run(None, {"input_1": wins})[0]
        mel = np.stack([self.p808_features(w) for w in wins])
        p808 = self.p808.run(None, {"input_1": mel})[0][:, 0]
        return {"ovrl": float(np.mean(POLY_OVR(raw[:, 2]))),
                "sig": float(np.mean(POLY_SIG(raw[:, 0]))),
                "bak": float(np.mean(POLY_BAK(raw[:, 1]))),
                "p808": float(np.mean(p808))}

    def score_file(self, path: str | Path) -> dict[str, float]:
        wave, _ = load_audio(path, SR)
        return self.score_wave(np.clip(wave, -1.0, 1.0))


@functools.lru_cache(maxsize=1)
def default_dnsmos() -> DNSMOS:
    return DNSMOS()
