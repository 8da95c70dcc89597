"""Our implementation of the WavTokenizer codec (single 4096-entry VQ, 40 or 75 tokens/s, 24 kHz)
that loads the officially released config YAML + PyTorch-Lightning checkpoint.

There is no WavTokenizer package and its weights cannot be downloaded here, so the network is
written from the published architecture (facts in docs/acoustic.md): a SEANet encoder with
old-style weight-normalised convolutions and a 2-layer LSTM, one Euclidean codebook, and a
Vocos decoder (conv embedding, ``pos_net`` with self-attention, AdaLayerNorm ConvNeXt blocks)
with an iSTFT head using "same" padding. Module names mirror the official ones so the
checkpoint's ``state_dict`` loads strictly, unchanged. Everything is non-causal: a clip's codes
depend on the whole clip, so clips are encoded one at a time (zero padding in a batch would
change the codes near the end).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from dualspeech.config import ConfigError, build
from dualspeech.tokenizers.codecs.base import Codec, register_codec
from dualspeech.tokenizers.codecs.layers import CheckpointError, WNConv1d, load_strict, read_checkpoint
from dualspeech.utils.io import short_hash

KEEP_PREFIXES = ("feature_extractor.", "backbone.", "head.")


@dataclass
class WavTokenizerArch:
    """Architecture numbers; ``from_yaml`` reads them from the official training config."""
    sample_rate: int = 24000
    downsamples: tuple[int, ...] = (6, 5, 5, 4)   # config order; the encoder applies them reversed
    codebook_size: int = 4096
    encoder_filters: int = 32                     # fixed in the official code (not in the YAML)
    encoder_dim: int = 512
    lstm_layers: int = 2
    decoder_ratios: tuple[int, ...] = (8, 5, 4, 2)  # the unused SEANet decoder (fixed officially)
    dim: int = 768
    intermediate_dim: int = 2304
    num_layers: int = 12
    adanorm_num_embeddings: int = 4
    n_fft: int = 2400
    hop_length: int = 600

    @property
    def hop(self) -> int:
        return math.prod(self.downsamples)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "WavTokenizerArch":
        try:
            cfg = yaml.safe_load(Path(path).read_text())
            args = cfg["model"]["init_args"]
            fe = args["feature_extractor"]["init_args"]
            bb = args["backbone"]["init_args"]
            head = args["head"]["init_args"]
            arch = cls(sample_rate=int(args["sample_rate"]), downsamples=tuple(fe["dowmsamples"]),
                       codebook_size=int(fe["vq_bins"]), dim=int(bb["dim"]),
                       intermediate_dim=int(bb["intermediate_dim"]), num_layers=int(bb["num_layers"]),
                       adanorm_num_embeddings=int(bb["adanorm_num_embeddings"]),
                       n_fft=int(head["n_fft"]), hop_length=int(head["hop_length"]), **overrides)
        except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}: not a WavTokenizer training config (expected model.init_args."
                              f"{{sample_rate, feature_extractor, backbone, head}}): {e!r}") from e
        if fe.get("num_quantizers", 1) != 1 or head.get("padding", "same") != "same":
            raise ConfigError(f"{path}: only num_quantizers 1 and head padding 'same' are supported")
        if bb["input_channels"] != arch.encoder_dim or arch.hop != arch.hop_length:
            raise ConfigError(f"{path}: backbone.input_channels must equal the encoder dim "
                              f"({arch.encoder_dim}) and prod(dowmsamples) the head hop_length")
        return arch


class Nest(nn.Module):
    """A plain container so parameter names follow the official nesting (``encodec.encoder.model``)."""

    def __init__(self, **children: nn.Module):
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)


def reflect_pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflect padding that also works when the input is shorter than the pad (zero-extend first)."""
    extra = max(0, max(left, right) - x.shape[-1] + 1)
    if extra:
        x = F.pad(x, (0, extra))
    x = F.pad(x, (left, right), mode="reflect")
    return x[..., : x.shape[-1] - extra] if extra else x


class SConv1d(nn.Module):
    """Non-causal conv with "same"-style padding: every full stride window gets an output."""

    def __init__(self, cin, cout, kernel, stride=1, dilation=1):
        super().__init__()
        self.conv = Nest(conv=WNConv1d(cin, cout, kernel, stride, dilation))
        self.kernel, self.stride = (kernel - 1) * dilation + 1, stride

    def forward(self, x):
        total = self.kernel - self.stride
        length = x.shape[-1]
        extra = math.ceil(length / self.stride) * self.stride - length
        return self.conv.conv(reflect_pad(x, total - total // 2, total // 2 + extra))


class SConvTranspose1d(nn.Module):
    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        self.convtr = Nest(convtr=WNConv1d(cin, cout, kernel, stride, transpose=True))
        self.total = kernel - stride

    def forward(self, x):
        y = self.convtr.convtr(x)
        right = self.total // 2
        return y[..., self.total - right: y.shape[-1] - right]


class SEANetResBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(nn.ELU(), SConv1d(dim, dim // 2, 3), nn.ELU(), SConv1d(dim // 2, dim, 1))
        self.shortcut = SConv1d(dim, dim, 1)

    def forward(self, x):
        return self.shortcut(x) + self.block(x)


class SLSTM(nn.Module):
    """Unidirectional LSTM over time with a skip connection; [B, C, T] in and out."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, layers)

    def forward(self, x):
        y, _ = self.lstm(x.permute(2, 0, 1))
        return y.permute(1, 2, 0) + x


def seanet_encoder(a: WavTokenizerArch) -> nn.Sequential:
    layers: list[nn.Module] = [SConv1d(1, a.encoder_filters, 7)]
    ch = a.encoder_filters
    for ratio in reversed(a.downsamples):
        layers += [SEANetResBlock(ch), nn.ELU(), SConv1d(ch, 2 * ch, 2 * ratio, stride=ratio)]
        ch *= 2
    return nn.Sequential(*layers, SLSTM(ch, a.lstm_layers), nn.ELU(), SConv1d(ch, a.encoder_dim, 7))


def seanet_decoder(a: WavTokenizerArch) -> nn.Sequential:
    """Present in every checkpoint (EnCodec-style reconstruction used in training); WavTokenizer
    synthesises with the Vocos backbone instead, but a strict load needs these weights."""
    ch = a.encoder_filters * 2 ** len(a.decoder_ratios)
    layers: list[nn.Module] = [SConv1d(a.encoder_dim, ch, 7), SLSTM(ch, a.lstm_layers)]
    for ratio in a.decoder_ratios:
        layers += [nn.ELU(), SConvTranspose1d(ch, ch // 2, 2 * ratio, ratio), SEANetResBlock(ch // 2)]
        ch //= 2
    return nn.Sequential(*layers, nn.ELU(), SConv1d(ch, 1, 7))


class Codebook(nn.Module):
    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("inited", torch.ones(1))
        self.register_buffer("cluster_size", torch.zeros(size))
        self.register_buffer("embed", torch.randn(size, dim))
        self.register_buffer("embed_avg", torch.zeros(size, dim))

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, D, N] -> ids [B, N] of the nearest (Euclidean) codebook vectors."""
        flat = x.transpose(1, 2).reshape(-1, x.shape[1])
        e = self.embed
        dist = (flat * flat).sum(1, keepdim=True) - 2 * flat @ e.T + (e * e).sum(1)[None]
        return dist.argmin(1).view(x.shape[0], x.shape[2])


def swish(x):
    return x * torch.sigmoid(x)


def group_norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, ch, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(ch), nn.Conv1d(ch, ch, 3, padding=1)
        self.norm2, self.conv2 = group_norm(ch), nn.Conv1d(ch, ch, 3, padding=1)

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        return x + self.conv2(swish(self.norm2(h)))


class AttnBlock(nn.Module):
    """Single-head self-attention over time with 1x1 conv projections and a residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = group_norm(ch)
        self.q, self.k, self.v, self.proj_out = (nn.Conv1d(ch, ch, 1) for _ in range(4))

    def forward(self, x):
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)                      # [B, C, T]
        w = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(x.shape[1]), dim=-1)  # [B, Tq, Tk]
        return x + self.proj_out(v @ w.transpose(1, 2))


class AdaLayerNorm(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.scale, self.shift = nn.Embedding(n, dim), nn.Embedding(n, dim)

    def forward(self, x, cond: int):
        x = F.layer_norm(x, x.shape[-1:], eps=1e-6)
        return x * self.scale.weight[cond] + self.shift.weight[cond]


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, n_cond: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = AdaLayerNorm(n_cond, dim)
        self.pwconv1, self.pwconv2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x, cond: int):
        h = self.norm(self.dwconv(x).transpose(1, 2), cond)
        h = self.gamma * self.pwconv2(F.gelu(self.pwconv1(h)))
        return x + h.transpose(1, 2)


class VocosBackbone(nn.Module):
    def __init__(self, a: WavTokenizerArch):
        super().__init__()
        d = a.dim
        self.embed = nn.Conv1d(a.encoder_dim, d, 7, padding=3)
        self.pos_net = nn.Sequential(ResnetBlock(d), ResnetBlock(d), AttnBlock(d), ResnetBlock(d),
                                     ResnetBlock(d), group_norm(d))
        self.norm = AdaLayerNorm(a.adanorm_num_embeddings, d)
        self.convnext = nn.ModuleList(ConvNeXtBlock(d, a.intermediate_dim, a.adanorm_num_embeddings, 1 / a.num_layers)
                                      for _ in range(a.num_layers))
        self.final_layer_norm = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x, cond: int = 0):
        """[B, encoder_dim, N] -> [B, N, dim]"""
        x = self.pos_net(self.embed(x))
        x = self.norm(x.transpose(1, 2), cond).transpose(1, 2)
        for block in self.convnext:
            x = block(x, cond)
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFT(nn.Module):
    """Inverse STFT with "same" padding: overlap-add of windowed irfft frames, (win - hop) / 2
    samples trimmed at each end, normalised by the overlapped squared window -> hop * N samples."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        n = spec.shape[-1]
        frames = torch.fft.irfft(spec, self.n_fft, dim=1) * self.window[None, :, None]
        size = (n - 1) * self.hop + self.n_fft
        fold = dict(output_size=(1, size), kernel_size=(1, self.n_fft), stride=(1, self.hop))
        y = F.fold(frames, **fold)[:, 0, 0]
        env = F.fold(self.window.square()[None, :, None].expand(1, -1, n), **fold)[0, 0, 0]
        pad = (self.n_fft - self.hop) // 2
        return y[:, pad:size - pad] / env[pad:size - pad]


class ISTFTHead(nn.Module):
    def __init__(self, a: WavTokenizerArch):
        super().__init__()
        self.out = nn.Linear(a.dim, a.n_fft + 2)
        self.istft = ISTFT(a.n_fft, a.hop_length)

    def forward(self, x):
        mag, phase = self.out(x).transpose(1, 2).chunk(2, dim=1)
        mag = torch.exp(mag).clamp(max=100.0)
        return self.istft(torch.polar(mag, phase))


class WavTokenizerModel(nn.Module):
    def __init__(self, arch: WavTokenizerArch):
        super().__init__()
        self.arch = arch
        codebook = Codebook(arch.codebook_size, arch.encoder_dim)
        self.feature_extractor = Nest(encodec=Nest(
            encoder=Nest(model=seanet_encoder(arch)),
            quantizer=Nest(vq=Nest(layers=nn.ModuleList([Nest(_codebook=codebook)]))),
            decoder=Nest(model=seanet_decoder(arch))))
        self.backbone = VocosBackbone(arch)
        self.head = ISTFTHead(arch)

    @property
    def codebook(self) -> Codebook:
        return self.feature_extractor.encodec.quantizer.vq.layers[0]._codebook

    def latents(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, T] at 24 kHz -> encoder output [B, encoder_dim, ceil(T / hop)]"""
        return self.feature_extractor.encodec.encoder.model(wave[:, None])

    @torch.inference_mode()
    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        return self.codebook.nearest(self.latents(wave))

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, bandwidth_id: int = 0) -> torch.Tensor:
        """[B, N] ids -> [B, N * hop] waveform"""
        feats = F.embedding(codes, self.codebook.embed).transpose(1, 2)
        return self.head(self.backbone(feats, bandwidth_id))


def load_wavtokenizer(config: str | Path, checkpoint: str | Path, allow_unsafe_pickle: bool = False,
                      **arch_overrides) -> WavTokenizerModel:
    """Build from the official YAML and load the Lightning checkpoint's generator weights
    (``feature_extractor.*``, ``backbone.*``, ``head.*``; discriminators and losses dropped)."""
    arch = WavTokenizerArch.from_yaml(config, **arch_overrides)
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"WavTokenizer checkpoint {path} not found (e.g. "
                                "wavtokenizer_large_unify_600_24k.ckpt from novateur/"
                                "WavTokenizer-large-unify-40token; see docs/acoustic.md)")
    obj = read_checkpoint(path, allow_unsafe_pickle, "WavTokenizer")
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(f"{path}: expected a Lightning checkpoint with a 'state_dict' entry, "
                              f"got {type(obj).__name__} with keys {sorted(obj)[:8] if isinstance(obj, dict) else '-'}")
    state = {k: v for k, v in obj["state_dict"].items() if k.startswith(KEEP_PREFIXES)}
    model = WavTokenizerModel(arch)
    load_strict(model, state, f"{path} does not match {config}",
                "is this the checkpoint trained with this config?")
    return model.eval()


@dataclass
class WavTokenizerOptions:
    """``codec`` section options for ``name: wavtokenizer``."""
    config: str                      # official training YAML (model.init_args ...)
    checkpoint: str                  # Lightning .ckpt
    bandwidth_id: int = 0
    allow_unsafe_pickle: bool = False
    encoder_filters: int = 32        # fixed in the released models; smaller only for tests
    encoder_dim: int = 512


class WavTokenizerCodec(Codec):
    name = "wavtokenizer"

    def __init__(self, model: WavTokenizerModel, identity: str, bandwidth_id: int = 0):
        arch = model.arch
        if not 0 <= bandwidth_id < arch.adanorm_num_embeddings:
            raise ConfigError(f"codec.bandwidth_id must be in 0..{arch.adanorm_num_embeddings - 1}")
        self.model, self.bandwidth_id, self._identity = model.eval(), bandwidth_id, identity
        self.sample_rate, self.codebook_size = arch.sample_rate, arch.codebook_size
        self.frame_rate = arch.sample_rate / arch.hop

    @property
    def identity(self) -> str:
        return self._identity

    def _encode(self, waves):
        return [self.model.encode(torch.from_numpy(w)[None].to(self.device))[0].cpu().numpy()
                for w in waves]

    def _decode(self, ids):
        return [self.model.decode(torch.from_numpy(seq)[None].to(self.device),
                                  self.bandwidth_id)[0].cpu().numpy() for seq in ids]


RELEASE_REPO = "novateur/WavTokenizer-large-unify-40token"


def check_files(config: str | Path, checkpoint: str | Path) -> None:
    """Both released files must exist; otherwise one error naming them, where they go and how
    to get them (nothing is downloaded at run time)."""
    missing = [str(p) for p in (config, checkpoint) if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"WavTokenizer files missing: {', '.join(missing)}. The codec needs two files from the "
            f"Hugging Face repo {RELEASE_REPO}: the config YAML ({Path(config).name}) at "
            f"codec.config={config} and the checkpoint ({Path(checkpoint).name}) at "
            f"codec.checkpoint={checkpoint}. On a machine with internet access run "
            f"`DUALSPEECH_ALLOW_NETWORK=1 python tools/download_models.py wavtokenizer "
            f"--link-into {Path(checkpoint).parent.resolve()}` (or put the files there yourself, or edit the "
            "paths in the codec config); to run without them pick an offline codec with "
            "--codec-config conf/codec_vqmel.yaml or conf/codec_melvq.yaml")


@register_codec("wavtokenizer")
def _build(options: dict) -> WavTokenizerCodec:
    opts = build(WavTokenizerOptions, options, where="codec")
    check_files(opts.config, opts.checkpoint)
    model = load_wavtokenizer(opts.config, opts.checkpoint, opts.allow_unsafe_pickle,
                              encoder_filters=opts.encoder_filters, encoder_dim=opts.encoder_dim)
    identity = f"wavtokenizer:{Path(opts.checkpoint).name}@{short_hash(opts.checkpoint)}"
    return WavTokenizerCodec(model, identity, opts.bandwidth_id)
