"""AcousticGPT: LLM hidden states + speaker embedding -> codec (acoustic) tokens.

nanoGPT-style decoder (pre-LayerNorm blocks, MHSA + GELU MLP, final LayerNorm, head tied to
the token embedding or, ``head: untied``, a separate matrix starting equal to it). The condition
is a prefix: one projected speaker-embedding frame, then the LLM hidden states passed through an
Adapter (Linear-ReLU-Linear). The prefix attends bidirectionally within itself; acoustic
tokens attend causally to the prefix and earlier tokens.

Batching: every example is laid out as ``[spk, cond (padded to Lc), tokens (padded)]``; padding
holes are masked out of attention and positions count valid frames only, so the same layout
serves training and KV-cache decoding (new tokens are appended at one shared column).

Positions: the prefix has its own table (``cpe``, ``cond_block_size`` rows) and the acoustic
tokens theirs (``wpe``, ``block_size`` rows, counted from the start token), as in the reference
code: ``block_size`` limits the acoustic tokens only, so a long condition (a long VC source)
does not eat into the speech that can be generated. A condition frame's position is the index
of its hidden state in the LLM sequence + 1 (``cond_pos``, from ``models/coc.py``): the
reference adds positions over the whole sequence and masks the frames it leaves out, so an
answer-only condition continues after the question instead of restarting at 1.

Vocabulary: ``dualspeech.data.token_layout.AcousticLayout`` (``n_codes`` codec ids, then pad,
no-speech, start, end). Sampling: ``dualspeech.models.sampling.sample_logits``.

API::

    gpt = AcousticGPT(AcousticGPTConfig(n_codes=4096, cond_dim=3072, spk_dim=512))
    loss, logits = gpt(cond, cond_mask, spk, tokens, tokens_mask, cond_pos=None)   # training
    codes = gpt.generate(cond, cond_mask, spk, max_len=1000, top_k=10, temperature=1.0)
    # -> list of 1-D LongTensors of codec ids (end token stripped); use_cache=False recomputes
    #    the whole sequence every step (the reference decoder; for benchmarks only)
    for ids in gpt.steps(cond, cond_mask, spk, max_len=1000):   # the same, one step at a time
        ...                                                      # (B,) ids, end_id once ended
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dualspeech.data.token_layout import AcousticLayout, AcousticSpec
from dualspeech.models.sampling import sample_logits


@dataclass
class AcousticGPTConfig:
    """``model.acoustic_gpt`` config section (paper: 6 blocks, 1024 dims, 8 heads, ctx 2000)."""
    n_codes: int = 4096
    n_layer: int = 6
    n_embd: int = 1024
    n_head: int = 8
    block_size: int = 2000            # acoustic positions: [start, codes, end]
    cond_block_size: int = 2048       # prefix positions: speaker frame + LLM hidden states
    dropout: float = 0.0
    spk_dim: int = 512
    cond_dim: int | None = None       # LLM hidden size; DualSpeechLM fills it in
    field: str = "acoustic_tokens"    # cut custom field with the codec ids
    gelu: str = "erf"                 # erf (torch default) | tanh (the reference's new_gelu)
    spk_bias: bool = True             # speaker projection bias (the reference has none)
    head: str = "tied"                # tied to wte | untied: own weight, initialised = wte
                                      # (the reference's checkpoints: peft unties gpt_head)

    def __post_init__(self):
        if self.gelu not in ("erf", "tanh"):
            raise ValueError(f"acoustic_gpt.gelu={self.gelu!r}; use erf or tanh")
        if self.head not in ("tied", "untied"):
            raise ValueError(f"acoustic_gpt.head={self.head!r}; use tied or untied")

    def spec(self) -> AcousticSpec:
        """The part of this config the dataset needs."""
        return AcousticSpec(self.field, self.n_codes, self.spk_dim, self.block_size,
                            self.cond_block_size)


class SelfAttention(nn.Module):
    def __init__(self, cfg: AcousticGPTConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"acoustic_gpt.n_embd={cfg.n_embd} must be divisible by n_head")
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, mask, past=None):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.c_attn(x).split(C, dim=2))
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y)), (k, v)


class Block(nn.Module):
    def __init__(self, cfg: AcousticGPTConfig):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = SelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd),
                                 nn.GELU(approximate="tanh" if cfg.gelu == "tanh" else "none"),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd), nn.Dropout(cfg.dropout))

    def forward(self, x, mask, past=None):
        a, kv = self.attn(self.ln_1(x), mask, past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), kv


class AcousticGPT(nn.Module):
    def __init__(self, cfg: AcousticGPTConfig):
        super().__init__()
        if not cfg.cond_dim:
            raise ValueError("acoustic_gpt.cond_dim must be set (the LLM hidden size)")
        self.cfg = cfg
        self.layout = layout = AcousticLayout(cfg.n_codes)
        self.pad_id, self.no_speech_id = layout.pad_id, layout.no_speech_id
        self.start_id, self.end_id = layout.start_id, layout.end_id
        self.vocab_size = layout.vocab_size
        self.adapter = nn.Sequential(nn.Linear(cfg.cond_dim, cfg.cond_dim), nn.ReLU(),
                                     nn.Linear(cfg.cond_dim, cfg.n_embd))
        self.spk_proj = nn.Linear(cfg.spk_dim, cfg.n_embd, bias=cfg.spk_bias)
        self.wte = nn.Embedding(self.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.cpe = nn.Embedding(cfg.cond_block_size, cfg.n_embd)   # condition positions
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))
        if cfg.head == "untied":
            self.head = nn.Parameter(self.wte.weight.detach().clone())

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    # -- shared pieces --------------------------------------------------------------------------
    def _prefix(self, cond, cond_mask, spk, cond_pos=None):
        """Prefix embeddings with their positions (B, 1+Lc, C) and validity (B, 1+Lc).

        ``cond_pos`` (B, Lc): the position of each condition frame (the speaker frame is 0);
        DualSpeechLM passes each hidden state's index in the LLM sequence + 1, as the reference
        counts them. ``None`` counts the valid frames (1, 2, ...)."""
        if spk.shape[-1] != self.cfg.spk_dim:
            raise ValueError(f"speaker embedding has {spk.shape[-1]} dims, acoustic_gpt.spk_dim "
                             f"is {self.cfg.spk_dim}")
        w = self.spk_proj.weight
        x = torch.cat([self.spk_proj(spk.to(w.dtype)).unsqueeze(1),
                       self.adapter(cond.to(w.dtype))], 1)
        valid = torch.cat([cond_mask.new_ones(cond_mask.shape[0], 1), cond_mask.bool()], 1)
        if cond_pos is None:
            pos = _positions(valid)
        else:
            if cond_pos.shape != cond_mask.shape:
                raise ValueError(f"cond_pos has shape {tuple(cond_pos.shape)}, the condition "
                                 f"mask {tuple(cond_mask.shape)}")
            pos = torch.cat([cond_pos.new_zeros(cond_pos.shape[0], 1),
                             cond_pos.long().masked_fill(~cond_mask.bool(), 0)], 1)
        n = int(pos.max()) + 1 if pos.numel() else 1
        if n > self.cfg.cond_block_size:
            raise ValueError(f"AcousticGPT condition reaches position {n - 1} (speaker + LLM "
                             f"states), acoustic_gpt.cond_block_size={self.cfg.cond_block_size}")
        return x + self.cpe(pos), valid

    def _tokens(self, tokens, pos):
        """Token embeddings plus their positions (counted from the start token)."""
        if int(pos.max()) >= self.cfg.block_size:
            raise ValueError(f"AcousticGPT sequence of {int(pos.max()) + 1} acoustic tokens "
                             f"exceeds acoustic_gpt.block_size={self.cfg.block_size}")
        return self.wte(tokens) + self.wpe(pos)

    def _run(self, x, mask, past=None):
        x = self.drop(x)
        new_past = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, mask, None if past is None else past[i])
            new_past.append(kv)
        return self.ln_f(x), new_past

    def _logits(self, h):
        return F.linear(h, self.head if self.cfg.head == "untied" else self.wte.weight)

    @staticmethod
    def _full_mask(valid, is_prefix):
        """(B,1,T,T) bool: prefix<->prefix bidirectional, tokens causal; padding never attended."""
        T = valid.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=valid.device).tril()
        pp = is_prefix[:, :, None] & is_prefix[:, None, :]
        tok = ~is_prefix[:, :, None] & causal
        return ((pp | tok) & valid[:, None, :]).unsqueeze(1)

    def _layout(self, cond, cond_mask, spk, tokens, tokens_mask, cond_pos=None):
        px, pvalid = self._prefix(cond, cond_mask, spk, cond_pos)
        x = torch.cat([px, self._tokens(tokens, _positions(tokens_mask.bool()))], 1)
        valid = torch.cat([pvalid, tokens_mask.bool()], 1)
        is_prefix = torch.zeros_like(valid)
        is_prefix[:, :px.shape[1]] = True
        return x, self._full_mask(valid, is_prefix), px.shape[1], valid

    # -- training -----------------------------------------------------------------------------
    def forward(self, cond, cond_mask, spk, tokens, tokens_mask, cond_pos=None):
        """Teacher-forced CE. ``tokens`` = [start, codes..., end] right padded with pad_id;
        ``cond_pos``: see ``_prefix``.

        Returns (mean CE over predicted tokens, logits (B, La, V))."""
        x, mask, P, _ = self._layout(cond, cond_mask, spk, tokens, tokens_mask, cond_pos)
        h, _ = self._run(x, mask)
        logits = self._logits(h[:, P:])
        target = tokens[:, 1:].masked_fill(~tokens_mask[:, 1:].bool(), -100)
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, self.vocab_size),
                               target.reshape(-1), ignore_index=-100)
        return loss, logits

    def make_tokens(self, codes: list[torch.Tensor]):
        return self.layout.targets(codes)

    # -- decoding -----------------------------------------------------------------------------
    @property
    def max_new_tokens(self) -> int:
        """Most codec ids one generation can hold: the start token takes one position."""
        return self.cfg.block_size - 1

    def _sample(self, logits, top_k, temperature, generator, allow_end=True):
        logits = logits.float()
        banned = [self.pad_id, self.no_speech_id, self.start_id] + ([] if allow_end else
                                                                     [self.end_id])
        logits[:, banned] = float("-inf")
        return sample_logits(logits, temperature, top_k, generator=generator)

    @torch.no_grad()
    def generate(self, cond, cond_mask, spk, max_len: int | torch.Tensor = 1000, top_k: int = 10,
                 temperature: float = 1.0, use_cache: bool = True,
                 generator: torch.Generator | None = None, min_len: int = 0,
                 cond_pos: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Sample up to ``max_len`` codec ids per example (batched; stops at end tokens).

        ``cond`` (B, Lc, cond_dim) right padded with ``cond_mask`` (B, Lc); ``spk`` (B, spk_dim).
        ``max_len`` is one limit or a (B,) tensor of per-example limits (an example at its limit
        ends there while the others go on); ``use_cache=False`` recomputes every step from
        scratch (reference behaviour); ``min_len`` forbids the end token before that many codes;
        ``cond_pos``: see ``_prefix``."""
        out = list(self.steps(cond, cond_mask, spk, max_len, top_k, temperature, use_cache,
                              generator, min_len, cond_pos))
        if not out:
            return [torch.zeros(0, dtype=torch.long) for _ in range(cond.shape[0])]
        seqs = torch.stack(out, 1)
        result = []
        for row in seqs:
            end = (row == self.end_id).nonzero()
            result.append(row[: int(end[0]) if len(end) else len(row)].cpu())
        return result

    @torch.no_grad()
    def steps(self, cond, cond_mask, spk, max_len: int | torch.Tensor = 1000, top_k: int = 10,
              temperature: float = 1.0, use_cache: bool = True,
              generator: torch.Generator | None = None, min_len: int = 0,
              cond_pos: torch.Tensor | None = None):
        """``generate`` one step at a time: yields the (B,) ids of each step (``end_id`` for an
        example that has ended) until every example has ended; what streaming consumes."""
        B = cond.shape[0]
        px, pvalid = self._prefix(cond, cond_mask, spk, cond_pos)
        P = px.shape[1]
        limits = torch.as_tensor(max_len, device=cond.device).expand(B).clamp(
            max=self.max_new_tokens)
        tokens = torch.full((B, 1), self.start_id, dtype=torch.long, device=cond.device)
        done = limits <= 0
        past = None
        for step in range(int(limits.max())):
            if use_cache and past is not None:
                x = self._tokens(tokens[:, -1:], torch.full((B, 1), step, device=cond.device))
                keys_valid = torch.cat([pvalid, pvalid.new_ones(B, step + 1)], 1)
                mask = keys_valid[:, None, None, :]
            else:
                pos = torch.arange(tokens.shape[1], device=cond.device).expand(B, -1)
                x = torch.cat([px, self._tokens(tokens, pos)], 1)
                valid = torch.cat([pvalid, pvalid.new_ones(tokens.shape)], 1)
                is_prefix = torch.zeros_like(valid)
                is_prefix[:, :P] = True
                mask = self._full_mask(valid, is_prefix)
            h, new_past = self._run(x, mask, past)
            past = new_past if use_cache else None
            nxt = self._sample(self._logits(h[:, -1]), top_k, temperature, generator,
                               allow_end=step >= min_len)
            nxt = nxt.masked_fill(done, self.end_id)
            done |= (nxt == self.end_id) | (limits <= step + 1)
            yield nxt
            if bool(done.all()):
                return
            tokens = torch.cat([tokens, nxt.unsqueeze(1)], 1)


def _positions(valid: torch.Tensor) -> torch.Tensor:
    """Position of every frame among the valid frames of its row (padding gets 0)."""
    return (valid.long().cumsum(1) - 1).clamp(min=0)
