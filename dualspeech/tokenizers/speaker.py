"""Speaker embeddings behind one interface; ``build_speaker_encoder(cfg["speaker"])`` picks the
backend by ``name``. DualSpeechLM's AcousticGPT is conditioned on the embedding and takes any
dimension, so the backend is a config choice:

``resemblyzer``  GE2E LSTM whose weights the resemblyzer wheel ships (offline default, 256-d);
                 ``weights`` may name another ``pretrained.pt``.
``wavlm_sv``     transformers ``WavLMForXVector`` (e.g. microsoft/wavlm-base-plus-sv, 512-d) from
                 a local dir or a ``dualspeech.pretrained`` spec given as ``model``.
``onnx``         a user-supplied 3D-Speaker ONNX export (the paper's choice, e.g. ERes2Net /
                 CAM++): 80-bin Kaldi fbank, per-utterance mean normalised, in; embedding out.

All read 16 kHz mono float waves. Every encoder has an ``identity`` (backend + weights hash)
that extraction records next to the embeddings.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dualspeech.config import ConfigError, build
from dualspeech.utils.io import short_hash
from dualspeech.utils.registry import registrar

SR = 16000
SPEAKER_ENCODERS: dict[str, Callable[[dict, str], "SpeakerEncoder"]] = {}


register_speaker_encoder = registrar(SPEAKER_ENCODERS, "speaker encoder")


def build_speaker_encoder(cfg: dict, device: str = "cpu") -> "SpeakerEncoder":
    """``cfg`` is the ``speaker`` config section: ``{"name": <backend>, **backend options}``."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ConfigError(f"speaker: expected a mapping with a 'name' key, got {cfg!r}")
    options = dict(cfg)
    name = options.pop("name")
    if name not in SPEAKER_ENCODERS:
        raise ConfigError(f"speaker.name: unknown speaker encoder {name!r}; "
                          f"known: {sorted(SPEAKER_ENCODERS)}")
    return SPEAKER_ENCODERS[name](options, device)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [N, D] arrays."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(den, 1e-12)


class SpeakerEncoder(abc.ABC):
    name: str
    sample_rate: int = SR
    identity: str

    def embed(self, waves: list[np.ndarray]) -> np.ndarray:
        """[N, D] float32 embeddings of 16 kHz mono waves (one row per wave)."""
        for i, w in enumerate(waves):
            if np.ndim(w) != 1 or len(w) < SR // 10:
                raise ValueError(f"wave {i}: expected >= 0.1 s of 1-D 16 kHz audio, got shape "
                                 f"{np.shape(w)}")
        return np.stack([np.asarray(e, dtype=np.float32) for e in self._embed(waves)])

    @abc.abstractmethod
    def _embed(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        ...


@dataclass
class ResemblyzerOptions:
    weights: str = "speaker:resemblyzer"
    trim_silence: bool = True   # resemblyzer's VAD trimming (kept off for clips under 0.25 s)


class ResemblyzerEncoder(SpeakerEncoder):
    name = "resemblyzer"

    def __init__(self, opts: ResemblyzerOptions, device: str = "cpu"):
        from resemblyzer import VoiceEncoder

        from dualspeech.pretrained import load_speaker_encoder_weights

        path = load_speaker_encoder_weights(opts.weights)
        self.encoder = VoiceEncoder(device=device, verbose=False, weights_fpath=path)
        self.trim = opts.trim_silence
        self.dim = 256
        self.identity = f"resemblyzer:{path.name}@{short_hash(path)}"

    def _embed(self, waves, batch: int = 64):
        """``VoiceEncoder.embed_utterance`` for many waves at once: every wave's fixed-size
        partial mel windows go through the LSTM together (``batch`` windows at a time; each row
        is independent, so the embeddings are those of one utterance at a time)."""
        from resemblyzer import audio, preprocess_wav

        windows, owner = [], []
        for i, w in enumerate(waves):
            if self.trim:
                trimmed = preprocess_wav(w, source_sr=SR)
                w = trimmed if len(trimmed) >= SR // 4 else w
            wav_slices, mel_slices = self.encoder.compute_partial_slices(len(w), rate=1.3,
                                                                         min_coverage=0.75)
            if wav_slices[-1].stop >= len(w):
                w = np.pad(w, (0, wav_slices[-1].stop - len(w)))
            mel = audio.wav_to_mel_spectrogram(w)
            windows += [mel[s] for s in mel_slices]
            owner += [i] * len(mel_slices)
        with torch.no_grad():
            partial = np.concatenate([
                self.encoder(torch.from_numpy(np.array(windows[k:k + batch])).to(
                    self.encoder.device)).cpu().numpy() for k in range(0, len(windows), batch)])
        owner = np.array(owner)
        out = []
        for i in range(len(waves)):
            raw = partial[owner == i].mean(0)
            out.append(raw / np.linalg.norm(raw, 2))
        return out


@dataclass
class WavLMOptions:
    model: str = ""


class WavLMSVEncoder(SpeakerEncoder):
    name = "wavlm_sv"

    def __init__(self, opts: WavLMOptions, device: str = "cpu"):
        from transformers import AutoFeatureExtractor, WavLMForXVector

        from dualspeech.pretrained import resolve

        if not opts.model:
            raise ConfigError("speaker.model: give the local dir of a WavLMForXVector checkpoint "
                              "(e.g. a download of microsoft/wavlm-base-plus-sv)")
        path = resolve(opts.model)
        self.features = AutoFeatureExtractor.from_pretrained(path)
        self.model = WavLMForXVector.from_pretrained(path).to(device).eval()
        self.device = device
        self.dim = self.model.config.xvector_output_dim
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        self.identity = f"wavlm_sv:{path.name}@" + (short_hash(weights[0]) if weights else "noweights")

    @torch.no_grad()
    def _embed(self, waves):
        out = []
        for w in waves:   # one at a time: padding would change the x-vector statistics pooling
            inputs = self.features(w, sampling_rate=SR, return_tensors="pt")
            emb = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).embeddings
            out.append(emb[0].float().cpu().numpy())
        return out


def kaldi_fbank(wave: np.ndarray, n_mels: int = 80, sr: int = SR) -> np.ndarray:
    """Kaldi-style log mel filterbank [frames, n_mels] (25 ms povey window, 10 ms shift, snip
    edges, DC removal, pre-emphasis 0.97, 512-point power spectrum, mel bins from 20 Hz to
    Nyquist, no dither): the features 3D-Speaker models are trained on."""
    win, hop, n_fft = int(0.025 * sr), int(0.010 * sr), 512
    if len(wave) < win:
        raise ValueError(f"fbank needs at least {win} samples, got {len(wave)}")
    n = 1 + (len(wave) - win) // hop
    frames = np.lib.stride_tricks.sliding_window_view(wave.astype(np.float64), win)[::hop][:n]
    frames = frames - frames.mean(1, keepdims=True)
    frames = np.concatenate([frames[:, :1] * 0.03, frames[:, 1:] - 0.97 * frames[:, :-1]], 1)
    frames = frames * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / (win - 1))) ** 0.85
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)   # noqa: E731
    edges = np.linspace(mel(20.0), mel(sr / 2), n_mels + 2)
    bins = mel(np.arange(n_fft // 2) * sr / n_fft)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up, down = (bins - left) / (centre - left), (right - bins) / (right - centre)
    banks = np.maximum(0.0, np.minimum(up, down))
    energies = power[:, : n_fft // 2] @ banks.T
    return np.log(np.maximum(energies, np.finfo(np.float32).eps)).astype(np.float32)


@dataclass
class OnnxOptions:
    model: str = ""
    n_mels: int = 80
    threads: int = 1


class OnnxSpeakerEncoder(SpeakerEncoder):
    """A 3D-Speaker model exported to ONNX: input [1, frames, n_mels] fbank, output [1, D]."""
    name = "onnx"

    def __init__(self, opts: OnnxOptions, device: str = "cpu"):
        import onnxruntime as ort

        path = Path(opts.model)
        if not path.is_file():
            raise FileNotFoundError(f"speaker.model: ONNX speaker model {path} not found; export a "
                                    "3D-Speaker model (e.g. ERes2Net) to ONNX and give its path")
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = opts.threads
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:   # onnxruntime raises its own exception types for bad files
            raise ValueError(f"{path} is not a loadable ONNX model: {e}") from e
        self.input = self.session.get_inputs()[0].name
        self.n_mels = opts.n_mels
        self.dim = self.session.get_outputs()[0].shape[-1]
        self.identity = f"onnx:{path.name}@{short_hash(path)}"

    def _embed(self, waves):
        out = []
        for w in waves:
            feats = kaldi_fbank(w, self.n_mels)
            feats -= feats.mean(0, keepdims=True)
            out.append(self.session.run(None, {self.input: feats[None]})[0].reshape(-1))
        return out


@register_speaker_encoder("resemblyzer")
def _resemblyzer(options: dict, device: str) -> SpeakerEncoder:
    return ResemblyzerEncoder(build(ResemblyzerOptions, options, where="speaker"), device)


@register_speaker_encoder("wavlm_sv")
def _wavlm(options: dict, device: str) -> SpeakerEncoder:
    return WavLMSVEncoder(build(WavLMOptions, options, where="speaker"), device)


@register_speaker_encoder("onnx")
def _onnx(options: dict, device: str) -> SpeakerEncoder:
    return OnnxSpeakerEncoder(build(OnnxOptions, options, where="speaker"), device)
