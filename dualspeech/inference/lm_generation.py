"""KV-cached generation with a DualSpeechLM: text answers, speech tokens, then codec tokens.

API (``batch`` is ``TaskDataset.collate_prompts(examples)``: left-padded ``input_ids`` and
``attention_mask`` of the prompts; generation prompts end with ``<boa>``)::

    texts = generate_text(model, batch, max_new_tokens=128, temperature=0.6, top_p=0.9,
                          top_k=0, do_sample=True, generator=None)            # list[str]
        # stops at any of text_stop_ids(model); with_ended=True also returns, per answer,
        # whether it stopped by itself (False: cut at max_new_tokens)
    out = generate_speech_tokens(model, batch, max_new_tokens=400, temperature=0.6, top_p=0.9)
        # SpeechTokens(tokens=[codes (N_i,)], prompt_hidden=[(Lp_i, H)], token_hidden=[(N_i, H)],
        #              tasks=[task_i])
    codes = generate_acoustic(model, out, speaker_embedding (B, spk_dim), max_len=1000,
                              top_k=10, temperature=1.0)   # list of codec id tensors

Next tokens come from ``dualspeech.models.sampling.sample_logits`` (the sampler AcousticGPT
uses too); the AcousticGPT condition follows ``dualspeech.models.coc``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dualspeech.models import coc
from dualspeech.models.sampling import sample_logits


@dataclass
class SpeechTokens:
    tokens: list[torch.Tensor]         # speech codes 0..K-1 per example
    prompt_hidden: list[torch.Tensor]  # (Lp, H) final-layer hidden states of the prompt
    token_hidden: list[torch.Tensor]   # (N, H) hidden states at the generated speech tokens
                                       # (+ <eoa> when it ended, with model.coc_spans: reference)
    tasks: list[str]                   # task of each example (Chain-of-Condition covers TTS/VC)

    def select(self, keep: list[int]) -> "SpeechTokens":
        return SpeechTokens([self.tokens[i] for i in keep], [self.prompt_hidden[i] for i in keep],
                            [self.token_hidden[i] for i in keep], [self.tasks[i] for i in keep])


@torch.no_grad()
def _decode(model, batch, allowed: torch.Tensor, stop_ids: list[int], max_new_tokens: int,
            temperature: float, top_p: float, top_k: int, do_sample: bool, generator,
            keep_hidden: bool, stop_hidden: bool = False):
    """Batched incremental sampling with the backbone's KV cache; left-padded prompts. Returns
    per example the ids before the first stop id, the prompt and token hidden states (with
    ``stop_hidden`` also the stop token's, where it stopped), and whether it stopped by itself."""
    from transformers import DynamicCache

    ids, mask = batch["input_ids"], batch["attention_mask"]
    stops = torch.tensor(stop_ids, device=ids.device)
    B = ids.shape[0]
    past = DynamicCache(config=model.backbone.config)
    h, past = model.hidden(ids, mask, past)
    prompt_h, pos = h, mask.long().sum(1) - 1
    done = torch.zeros(B, dtype=torch.bool, device=ids.device)
    tokens, hiddens = [], []
    for _ in range(max_new_tokens):
        logits = model.logits(h[:, -1]).float().masked_fill(~allowed, float("-inf"))
        nxt = sample_logits(logits, temperature, top_k, top_p, do_sample, generator)
        nxt = nxt.masked_fill(done, stop_ids[0])
        tokens.append(nxt)
        done |= torch.isin(nxt, stops)
        if bool(done.all()):
            break
        mask = torch.cat([mask, mask.new_ones(B, 1)], 1)
        pos = pos + 1
        h, past = model.hidden(nxt[:, None], mask, past, pos[:, None])
        if keep_hidden:
            hiddens.append(h[:, -1])
    if stop_hidden and len(hiddens) < len(tokens):   # the last stop token was not fed yet
        mask = torch.cat([mask, mask.new_ones(B, 1)], 1)
        h, past = model.hidden(nxt[:, None], mask, past, pos[:, None] + 1)
        hiddens.append(h[:, -1])
    seq = torch.stack(tokens, 1)
    hits = torch.isin(seq, stops)
    ended = hits.any(1).tolist()
    lengths = [int(row.nonzero()[0]) if e else len(row) for row, e in zip(hits, ended)]
    prompts = [prompt_h[i][batch["attention_mask"][i].bool()] for i in range(B)]
    hid = torch.stack(hiddens, 1) if hiddens else h.new_zeros(B, 0, h.shape[-1])
    return ([seq[i, :n] for i, n in enumerate(lengths)], prompts,
            [hid[i, :n + (stop_hidden and e)] for i, (n, e) in enumerate(zip(lengths, ended))],
            ended)


def _allowed(vocab, speech: bool, device) -> torch.Tensor:
    """Ids the loop may produce: speech tokens + end-of-audio, or the text vocabulary."""
    if speech:
        return vocab.speech_output_mask(device)
    allowed = torch.zeros(vocab.size, dtype=torch.bool, device=device)
    allowed[:vocab.text_vocab_size] = True
    return allowed


def text_stop_ids(model) -> list[int]:
    """Ids that end a text answer: the tokenizer's eos (what training labels), the chat
    template's end of turn, and every eos id of the backbone's generation config (Phi-3.5
    ends a turn with ``<|end|>``, its tokenizer's eos is ``<|endoftext|>``)."""
    ids = set(model.templates.end_ids)
    eos = getattr(getattr(model.backbone, "generation_config", None), "eos_token_id", None)
    ids.update([eos] if isinstance(eos, int) else (eos or []))
    first = model.templates.eos_id   # the filler of finished rows
    return [first] + sorted(i for i in ids if i != first and 0 <= i < model.vocab.text_vocab_size)


def generate_text(model, batch, max_new_tokens: int = 128, temperature: float = 0.6,
                  top_p: float = 0.9, top_k: int = 0, do_sample: bool = True,
                  generator: torch.Generator | None = None, with_ended: bool = False):
    """Answers of understanding prompts (speech tokens are never produced); with
    ``with_ended`` also whether each stopped by itself (False: cut at ``max_new_tokens``)."""
    seqs, _, _, ended = _decode(
        model, batch, _allowed(model.vocab, False, batch["input_ids"].device),
        text_stop_ids(model), max_new_tokens, temperature, top_p, top_k, do_sample, generator,
        keep_hidden=False)
    texts = [model.vocab.tokenizer.decode(s.tolist(), skip_special_tokens=True).strip()
             for s in seqs]
    return (texts, ended) if with_ended else texts


def generate_speech_tokens(model, batch, max_new_tokens: int = 400, temperature: float = 0.6,
                           top_p: float = 0.9, top_k: int = 0, do_sample: bool = True,
                           generator: torch.Generator | None = None) -> SpeechTokens:
    """Speech tokens of generation prompts (stops at end-of-audio) + their hidden states."""
    seqs, prompts, hid, _ = _decode(
        model, batch, _allowed(model.vocab, True, batch["input_ids"].device),
        [model.vocab.end_audio_id], max_new_tokens, temperature, top_p, top_k, do_sample,
        generator, keep_hidden=True, stop_hidden=model.cfg.coc_spans == "reference")
    return SpeechTokens([model.vocab.codes(s).cpu() for s in seqs], prompts, hid,
                        list(batch["tasks"]))


def generate_acoustic(model, out: SpeechTokens, speaker_embedding: torch.Tensor,
                      max_len: int | torch.Tensor = 1000, top_k: int = 10,
                      temperature: float = 1.0, generator: torch.Generator | None = None,
                      stepwise: bool = False):
    """Codec ids from AcousticGPT, conditioned per Chain-of-Condition's inference rule
    (``models/coc.py``: the fixed ablation modes apply to TTS/VC; other tasks: concatenation).
    ``stepwise``: an iterator of each step's (B,) ids instead (``AcousticGPT.steps``), the
    same draws one frame at a time (streaming)."""
    if model.acoustic_gpt is None:
        raise ValueError("this model has no AcousticGPT (model.acoustic_gpt: null): its "
                         "speech tokens go to a unit vocoder / codec decoder directly")
    cond, cond_mask, cond_pos = coc.inference_condition(model.cfg.condition, out.prompt_hidden,
                                                        out.token_hidden, out.tasks,
                                                        model.cfg.coc_spans)
    run = model.acoustic_gpt.steps if stepwise else model.acoustic_gpt.generate
    return run(cond, cond_mask, speaker_embedding.to(cond.device), max_len, top_k, temperature,
               generator=generator, cond_pos=cond_pos)
