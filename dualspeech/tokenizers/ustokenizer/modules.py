"""Encoder (50 -> 25 Hz), decoder (25 -> 50 Hz) and the LLM adapter of the USTokenizer.

Convolutions run on [B, C, T]. Padded frames are zeroed before every convolution, so a batched
utterance gets exactly the output it would get alone (extraction results do not depend on
what else is in the batch).
"""
from __future__ import annotations

import torch
from torch import nn


class ResidualUnit(nn.Module):
    """RepCodec-style: ELU -> dilated conv k3 -> ELU -> conv 1x1, plus the input."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ELU(), nn.Conv1d(channels, channels, 3, dilation=dilation, padding=dilation),
            nn.ELU(), nn.Conv1d(channels, channels, 1))

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


class Adapter(nn.Module):
    """Code vectors -> the LLM's input-embedding space (reference: Linear, then Conv1d k3)."""

    def __init__(self, code_dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(code_dim, hidden)
        self.conv = nn.Conv1d(hidden, hidden, 3, padding=1)

    def forward(self, z: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.proj(z).transpose(1, 2) * frame_mask(lengths, z.shape[1])
        return self.conv(x).transpose(1, 2)
