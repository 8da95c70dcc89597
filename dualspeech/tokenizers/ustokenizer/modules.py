"""Encoder (50 -> 25 Hz), decoder (25 -> 50 Hz) and the LLM adapter of the USTokenizer.

Two architectures (``ustokenizer.arch``): ``compact`` (one strided conv, two residual units
with biases; ConvTranspose k4 gives 2T frames) and ``repcodec`` (the reference code's stacks,
about 2.6x the parameters; its decoder gives 2T - 1 frames).

Convolutions run on [B, C, T]. Padded frames are zeroed before every convolution, so a batched
utterance gets exactly the output it would get alone (extraction results do not depend on
what else is in the batch).
"""
from __future__ import annotations

import torch
from torch import nn


class ResidualUnit(nn.Module):
    """RepCodec-style: ELU -> dilated conv k3 -> ELU -> conv 1x1, plus the input."""

    def __init__(self, channels: int, dilation: int, bias: bool = True):
        super().__init__()
        self.block = nn.Sequential(
            nn.ELU(), nn.Conv1d(channels, channels, 3, dilation=dilation, padding=dilation,
                                bias=bias),
            nn.ELU(), nn.Conv1d(channels, channels, 1, bias=bias))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x + self.block(x)) * mask


def frame_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, 1, T] float mask of valid frames."""
    return (torch.arange(max_len, device=lengths.device) < lengths[:, None]).unsqueeze(1).float()


class Encoder(nn.Module):
    """Whisper features [B, T50, D] -> [B, T25, code_dim]."""

    def __init__(self, in_dim: int, channels: int, code_dim: int, dilations: list[int]):
        super().__init__()
        self.down = nn.Conv1d(in_dim, channels, 3, stride=2, padding=1)
        self.units = nn.ModuleList(ResidualUnit(channels, d) for d in dilations)
        self.out = nn.Sequential(nn.ELU(), nn.Conv1d(channels, code_dim, 1))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats.transpose(1, 2) * frame_mask(lengths, feats.shape[1])
        out_lengths = (lengths + 1) // 2
        x = self.down(x)
        mask = frame_mask(out_lengths, x.shape[-1])
        x = x * mask
        for unit in self.units:
            x = unit(x, mask)
        return (self.out(x) * mask).transpose(1, 2), out_lengths


class Decoder(nn.Module):
    """Codes [B, T25, code_dim] -> reconstructed Whisper features [B, 2*T25, D]."""

    def __init__(self, out_dim: int, channels: int, code_dim: int, dilations: list[int]):
        super().__init__()
        self.inp = nn.Conv1d(code_dim, channels, 3, padding=1)
        self.units = nn.ModuleList(ResidualUnit(channels, d) for d in reversed(dilations))
        self.up = nn.Sequential(nn.ELU(), nn.ConvTranspose1d(channels, out_dim, 4, stride=2, padding=1))

    def forward(self, z: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = frame_mask(lengths, z.shape[1])
        x = self.inp(z.transpose(1, 2) * mask) * mask
        for unit in self.units:
            x = unit(x, mask)
        return self.up(x).transpose(1, 2)

    @staticmethod
    def frames(lengths: torch.Tensor) -> torch.Tensor:
        """Reconstructed frames of each utterance alone (T codes -> 2T)."""
        return 2 * lengths


def _conv3(c_in: int, c_out: int, bias: bool) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, 3, padding=1, bias=bias)


class _MaskedStack(nn.Module):
    """Convolutions and residual units in order, padded frames zeroed after each."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask) if isinstance(layer, ResidualUnit) else layer(x) * mask
        return x


class RepCodecEncoder(nn.Module):
    """The reference code's encoder (``ustokenizer.arch: repcodec``, ~32.5 M parameters at 1024
    channels): conv k3 s2 (bias) -> conv k3 -> 2 x [unit, unit, conv k3 (bias)] -> conv k3;
    the units (dilation 1) and the other convolutions without biases."""

    def __init__(self, in_dim: int, channels: int, code_dim: int, blocks: int = 2):
        super().__init__()
        self.down = nn.Conv1d(in_dim, in_dim, 3, stride=2, padding=1)
        layers = [_conv3(in_dim, channels, False)]
        for _ in range(blocks):
            layers += [ResidualUnit(channels, 1, False), ResidualUnit(channels, 1, False),
                       _conv3(channels, channels, True)]
        self.stack = _MaskedStack(layers + [_conv3(channels, code_dim, False)])

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats.transpose(1, 2) * frame_mask(lengths, feats.shape[1])
        out_lengths = (lengths + 1) // 2
        x = self.down(x)
        mask = frame_mask(out_lengths, x.shape[-1])
        return self.stack(x * mask, mask).transpose(1, 2), out_lengths


class RepCodecDecoder(nn.Module):
    """The reference code's decoder: conv k3 -> 2 x [conv k3 (bias), unit, unit] -> conv k3 ->
    ConvTranspose1d k3 s2 p1 (bias), which gives 2T - 1 frames from T codes."""

    def __init__(self, out_dim: int, channels: int, code_dim: int, blocks: int = 2):
        super().__init__()
        layers = [_conv3(code_dim, channels, False)]
        for _ in range(blocks):
            layers += [_conv3(channels, channels, True), ResidualUnit(channels, 1, False),
                       ResidualUnit(channels, 1, False)]
        self.stack = _MaskedStack(layers + [_conv3(channels, out_dim, False)])
        self.up = nn.ConvTranspose1d(out_dim, out_dim, 3, stride=2, padding=1)

    def forward(self, z: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = frame_mask(lengths, z.shape[1])
        return self.up(self.stack(z.transpose(1, 2) * mask, mask)).transpose(1, 2)

    @staticmethod
    def frames(lengths: torch.Tensor) -> torch.Tensor:
        """Reconstructed frames of each utterance alone (T codes -> 2T - 1)."""
        return 2 * lengths - 1


def build_codec(arch: str, width: int, channels: int, code_dim: int,
                dilations: list[int]) -> tuple[nn.Module, nn.Module]:
    """The encoder and decoder of ``ustokenizer.arch`` (``dilations``: compact only)."""
    if arch == "compact":
        return (Encoder(width, channels, code_dim, dilations),
                Decoder(width, channels, code_dim, dilations))
    if arch == "repcodec":
        return RepCodecEncoder(width, channels, code_dim), RepCodecDecoder(width, channels, code_dim)
    raise ValueError(f"ustokenizer.arch={arch!r}; use compact or repcodec")


class Adapter(nn.Module):
    """Code vectors -> the LLM's input-embedding space (reference: Linear, then Conv1d k3)."""

    def __init__(self, code_dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(code_dim, hidden)
        self.conv = nn.Conv1d(hidden, hidden, 3, padding=1)

    def forward(self, z: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.proj(z).transpose(1, 2) * frame_mask(lengths, z.shape[1])
        return self.conv(x).transpose(1, 2)
