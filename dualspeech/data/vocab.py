"""Extend a text tokenizer with K discrete speech tokens and begin/end-of-audio markers.

The speech tokens are added as special tokens ``<|{prefix}_{i}|>`` so the text tokenizer never
splits or merges them. All ids are looked up from the tokenizer after adding (never assumed);
they must come out contiguous so a speech code ``c`` maps to ``first_id + c`` with one add.
The extended tokenizer plus ``speech_vocab.json`` are saved with every experiment, so decoding
uses exactly the ids training used.

Why the new rows live in a separate table (see ``dualspeechlm.py``): the base vocabulary stays
frozen and un-duplicated; only ``K + 2`` rows are trained.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dualspeech.utils.io import atomic_write_text


@dataclass
class SpeechVocabConfig:
    """``model.speech`` config section: which token field the LLM reads/writes and its size."""
    field: str = "ustokens"           # cut custom field holding the LLM-side speech tokens
    num_tokens: int = 1024            # K: codebook size of the input tokenizer
    prefix: str = "s"                 # speech token i is written <|{prefix}_{i}|>
    begin_audio: str = "<|begin_of_audio|>"
    end_audio: str = "<|end_of_audio|>"


class SpeechVocab:
    """Id bookkeeping for the extended vocabulary (text ids first, then K speech ids + markers)."""

    def __init__(self, tokenizer, cfg: SpeechVocabConfig, text_vocab_size: int):
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.text_vocab_size = text_vocab_size       # ids < this are the backbone's own tokens
        ids = tokenizer.convert_tokens_to_ids(self.token_strings())
        if any(i is None or i == tokenizer.unk_token_id for i in ids):
            raise ValueError("the tokenizer lacks some speech tokens; build it with "
                             "SpeechVocab.extend(tokenizer, cfg)")
        self.first_id = ids[0]
        if ids != list(range(self.first_id, self.first_id + len(ids))):
            raise ValueError("speech token ids are not contiguous in the extended tokenizer; "
                             "extend a tokenizer that has no other tokens added after its "
                             "vocabulary")
        if self.first_id != text_vocab_size:
            raise ValueError(f"speech tokens start at id {self.first_id}, expected right after "
                             f"the {text_vocab_size} text tokens")
        self.begin_audio_id = ids[-2]
        self.end_audio_id = ids[-1]

    @property
    def num_new(self) -> int:
        """Rows added to the vocabulary: K speech tokens + 2 markers."""
        return self.cfg.num_tokens + 2

    @property
    def size(self) -> int:
        return self.text_vocab_size + self.num_new

    def token_strings(self) -> list[str]:
        return ([f"<|{self.cfg.prefix}_{i}|>" for i in range(self.cfg.num_tokens)]
                + [self.cfg.begin_audio, self.cfg.end_audio])

    @classmethod
    def extend(cls, tokenizer, cfg: SpeechVocabConfig) -> "SpeechVocab":
        """Add the speech tokens to ``tokenizer`` (in place) and return the vocab."""
        text_vocab_size = len(tokenizer)
        probe = cls.__new__(cls)
        probe.cfg = cfg
        known = tokenizer.get_vocab()   # built anew on every call: once, not per token
        clash = [t for t in probe.token_strings() if t in known]
        if clash:
            raise ValueError(f"the tokenizer already has {clash[:3]}...; choose another "
                             "model.speech.prefix / marker strings")
        tokenizer.add_tokens(probe.token_strings(), special_tokens=True)
        return cls(tokenizer, cfg, text_vocab_size)

    def speech_ids(self, codes) -> torch.Tensor:
        """Codes 0..K-1 (array or tensor, 1-D) -> token ids; out-of-range codes are an error."""
        codes = torch.as_tensor(codes, dtype=torch.long).reshape(-1)
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.cfg.num_tokens):
            raise ValueError(f"speech codes must lie in [0, {self.cfg.num_tokens}) for "
                             f"model.speech.num_tokens={self.cfg.num_tokens}; got "
                             f"[{int(codes.min())}, {int(codes.max())}] in field "
                             f"{self.cfg.field!r} (wrong tokenizer or num_tokens?)")
        return codes + self.first_id

    def is_speech(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.first_id) & (ids < self.first_id + self.cfg.num_tokens)

    def speech_output_mask(self, device=None) -> torch.Tensor:
        """(size,) bool: the ids a speech-token step may produce, the speech codes and
        end-of-audio. Decoding samples from these; the semantic loss can be taken over them."""
        mask = torch.zeros(self.size, dtype=torch.bool, device=device)
        mask[self.first_id:self.first_id + self.cfg.num_tokens] = True
        mask[self.end_audio_id] = True
        return mask

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids -> speech codes, dropping everything that is not a speech token."""
        ids = torch.as_tensor(ids)
        return ids[self.is_speech(ids)] - self.first_id

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory)
        atomic_write_text(directory / "speech_vocab.json", json.dumps(
            {**asdict(self.cfg), "text_vocab_size": self.text_vocab_size}, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> "SpeechVocab":
        from transformers import AutoTokenizer

        directory = Path(directory)
        meta = json.loads((directory / "speech_vocab.json").read_text())
        text_vocab_size = meta.pop("text_vocab_size")
        # local_files_only as when the base tokenizer was first loaded: save_pretrained writes
        # the load's arguments into tokenizer_config.json, and a resumed training must export
        # the same bytes as an uninterrupted one
        return cls(AutoTokenizer.from_pretrained(directory, local_files_only=True),
                   SpeechVocabConfig(**meta), text_vocab_size)

