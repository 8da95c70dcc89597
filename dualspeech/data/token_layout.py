"""AcousticGPT's token layout, shared by the data code (targets) and the model (embedding, decoding).

Vocabulary of ``n_codes + 4``: the codec ids ``0..n_codes-1``, then pad, no-speech (reserved as
in the reference layout; never produced), start and end. Why here, below both ``data`` and
``models``: the dataset builds the ``[start, codes, end]`` targets and the model embeds and
samples them, so the ids must come from one place.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


class AcousticLayout:
    """The ids of an AcousticGPT vocabulary with ``n_codes`` codec ids."""

    def __init__(self, n_codes: int):
        self.n_codes = n_codes
        self.pad_id, self.no_speech_id, self.start_id, self.end_id = range(n_codes, n_codes + 4)
        self.vocab_size = n_codes + 4

    def targets(self, codes: list) -> tuple[torch.Tensor, torch.Tensor]:
        """Codec id sequences -> padded ``[start, codes, end]`` (B, La) LongTensor + bool mask."""
        width = max(len(c) for c in codes) + 2
        tokens = torch.full((len(codes), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(codes), width, dtype=torch.bool)
        for i, c in enumerate(codes):
            c = torch.as_tensor(c, dtype=torch.long).reshape(-1)
            if c.numel() and (int(c.min()) < 0 or int(c.max()) >= self.n_codes):
                raise ValueError(f"acoustic codes must lie in [0, {self.n_codes}) "
                                 f"(acoustic_gpt.n_codes); got [{int(c.min())}, {int(c.max())}]")
            tokens[i, :len(c) + 2] = torch.cat([c.new_tensor([self.start_id]), c,
                                                c.new_tensor([self.end_id])])
            mask[i, :len(c) + 2] = True
        return tokens, mask


@dataclass(frozen=True)
class AcousticSpec:
    """What the dataset needs to know about a model's AcousticGPT (built by
    ``AcousticGPTConfig.spec()``; ``None`` where the model has no acoustic stage)."""
    field: str          # cut custom field holding the codec ids
    n_codes: int
    spk_dim: int        # speaker-embedding size
    block_size: int     # acoustic positions: [start, codes, end] must fit
    cond_block_size: int  # condition positions: speaker frame + LLM hidden states must fit

    def condition_fits(self, n_llm_tokens):
        """The condition of an LLM sequence of ``n_llm_tokens`` fits its positions (int or
        numpy array): the speaker frame + at most every LLM position but the final
        end-of-audio, so at most ``n_llm_tokens`` frames."""
        return n_llm_tokens <= self.cond_block_size

    def tokens_fit(self, n_frames):
        """``[start, codes, end]`` fits the acoustic positions (int or numpy array)."""
        return n_frames + 2 <= self.block_size

    @property
    def layout(self) -> AcousticLayout:
        return AcousticLayout(self.n_codes)
