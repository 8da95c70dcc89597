"""Frozen Whisper encoder features at 50 Hz (output of the final LayerNorm), per utterance.

Two ways to run the encoder, chosen per tokenizer and stored in its checkpoint:

* ``pad_to_30s=True`` (the reference code): every utterance is padded to Whisper's 30 s window,
  encoded with all 1500 positions, and the output is cut to the real length.
* ``pad_to_30s=False`` (trimmed): the encoder sees only the real frames, with the positional
  embedding sliced to that length. In a batch, shorter utterances are padded, padded mel frames
  are zeroed and masked out of attention, so each utterance gets exactly the features it would
  get alone. Much faster for short utterances.

Utterances longer than 30 s are split into 30 s pieces that are encoded separately and
concatenated (a piece boundary falls on a token boundary: 30 s = 750 tokens).

``autocast_dtype`` (None by default: fp32) runs the Whisper encoder under ``torch.autocast`` in
that dtype; the log-mel input is computed and the output features returned in fp32, so the
tokenizer's own encoder and VQ distances are not affected. Extraction sets bf16 on CUDA.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from whisper.audio import HOP_LENGTH, N_SAMPLES, log_mel_spectrogram, pad_or_trim

SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = 2 * HOP_LENGTH       # 320 samples: one 50 Hz encoder frame
SAMPLES_PER_TOKEN = 2 * SAMPLES_PER_FRAME  # 640 samples: one 25 Hz token
MIN_SAMPLES = SAMPLES_PER_TOKEN


def num_frames(num_samples: int) -> int:
    """50 Hz encoder frames kept for an utterance (the reference's int(num_samples / 320))."""
    return num_samples // SAMPLES_PER_FRAME


def num_tokens(num_samples: int) -> int:
    """25 Hz tokens of an utterance: ceil(frames / 2) (stride-2 conv with padding 1)."""
    return (num_frames(num_samples) + 1) // 2


class WhisperFrontend(torch.nn.Module):
    def __init__(self, whisper_encoder: torch.nn.Module, n_mels: int, pad_to_30s: bool):
        super().__init__()
        self.encoder = whisper_encoder.eval().requires_grad_(False)
        self.n_mels = n_mels
        self.pad_to_30s = pad_to_30s
        self.width = whisper_encoder.ln_post.normalized_shape[0]
        self.autocast_dtype: torch.dtype | None = None

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: always in eval mode

    @torch.no_grad()
    def forward(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """16 kHz mono waves -> (features [B, T, width] zero-padded, frame counts [B])."""
        pieces, owner = [], []
        for i, wave in enumerate(waves):
            if wave.dim() != 1 or wave.numel() < MIN_SAMPLES:
                raise ValueError(f"utterance {i}: expected a 1-d wave of at least {MIN_SAMPLES} "
                                 f"samples (one token at 16 kHz), got shape {tuple(wave.shape)}")
            for start in range(0, wave.numel(), N_SAMPLES):
                piece = wave[start:start + N_SAMPLES]
                if piece.numel() >= SAMPLES_PER_FRAME or start == 0:
                    pieces.append(piece)
                    owner.append(i)
        feats = self._encode_pieces(pieces)
        per_utt: list[list[torch.Tensor]] = [[] for _ in waves]
        for i, f in zip(owner, feats):
            per_utt[i].append(f)
        out = [torch.cat(fs) for fs in per_utt]
        lengths = torch.tensor([len(f) for f in out], device=out[0].device)
        return torch.nn.utils.rnn.pad_sequence(out, batch_first=True), lengths

    def _encode_pieces(self, pieces: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each piece (<= 30 s) -> its [num_frames(len), width] features."""
        keep = [num_frames(p.numel()) for p in pieces]
        if self.pad_to_30s:
            mel = torch.stack([log_mel_spectrogram(pad_or_trim(p.float()), self.n_mels)
                               for p in pieces])
            with self._autocast(mel.device):
                x = self.encoder(mel)
        else:
            mels = [log_mel_spectrogram(p.float(), self.n_mels) for p in pieces]
            with self._autocast(mels[0].device):
                x = self._encode_trimmed(mels)
        return [x[i, :n].float() for i, n in enumerate(keep)]

    def _autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=self.autocast_dtype,
                              enabled=self.autocast_dtype is not None)

    def _encode_trimmed(self, mels: list[torch.Tensor]) -> torch.Tensor:
        enc = self.encoder
        lens = torch.tensor([m.shape[-1] for m in mels], device=mels[0].device)
        mel = torch.nn.utils.rnn.pad_sequence([m.T for m in mels], batch_first=True).transpose(1, 2)
        steps = torch.arange(mel.shape[-1], device=mel.device)
        x = F.gelu(enc.conv1(mel)) * (steps < lens[:, None])[:, None, :]
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        n_out = (lens + 1) // 2
        valid = torch.arange(x.shape[1], device=x.device) < n_out[:, None]
        x = x + enc.positional_embedding[: x.shape[1]].to(x.dtype)
        for block in enc.blocks:
            x = _masked_block(block, x, valid)
        return enc.ln_post(x)


def _masked_block(block: torch.nn.Module, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """A Whisper ResidualAttentionBlock (self-attention only) with a key padding mask."""
    attn = block.attn
    h = block.attn_ln(x)
    b, t, d = h.shape
    q, k, v = (lin(h).view(b, t, attn.n_head, d // attn.n_head).transpose(1, 2)
               for lin in (attn.query, attn.key, attn.value))
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :])
    x = x + attn.out(a.transpose(1, 2).reshape(b, t, d))
    return x + block.mlp(block.mlp_ln(x))
