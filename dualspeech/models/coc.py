"""Chain-of-Condition: which LLM hidden states condition AcousticGPT, in training and inference.

Both halves live here so the rule is read in one place:

* training (``model.condition: coc``): per example (``model.coc_draw: example``) or per batch
  (``batch``, the reference code), a uniform random choice of the prompt states, the target
  speech-token states, or their concatenation; outside training mode the concatenation;
* inference: ``coc`` always uses the concatenation ``[prompt; generated speech tokens]``.

What "prompt" and "target" are (``model.coc_spans``): ``codes`` = the prompt through ``<boa>``
and the speech codes; ``reference`` (the reference code's masks) = the question (bos + prompt,
before ``<boa>``) and the answer (``<boa>`` codes ``<eoa>``, + eos under ``templates.format:
reference``), so their concatenation is the whole sequence (``condition_spans``).

The fixed modes (``prompt`` | ``target`` | ``concat``, ablations) use the same rows in both.
Each row keeps its position in the LLM sequence (``gather_positions`` / ``inference_condition``)
so AcousticGPT sees where in the sequence a condition frame sat, as in the reference.
The rule (CoC or a fixed ablation mode) applies to ``COC_TASKS`` (TTS and VC, as in the
paper) only; every other generation task (T2ST, SC) always conditions on the concatenation.
"""
from __future__ import annotations

import torch

CONDITIONS = ("coc", "prompt", "target", "concat")
SPANS = ("codes", "reference")
COC_TASKS = ("tts", "vc")   # the paper's CoC (and its ablations) cover these two tasks
REFERENCE_DRAW = (0.33, 0.66)   # its one draw per batch: < .33 question, < .66 answer, else all


def condition_spans(spans: str, prompt: torch.Tensor, target: torch.Tensor,
                    attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt, target) masks (B, T) of generation rows whose batch masks are ``prompt``
    (through ``<boa>``), ``target`` (the codes) and ``attention`` (the whole sequence), under
    ``model.coc_spans``: ``codes`` keeps them; ``reference`` moves ``<boa>`` (the last prompt
    position) to the answer, which runs to the end of the sequence."""
    if spans == "codes":
        return prompt, target
    question = prompt.clone()
    question[torch.arange(len(prompt), device=prompt.device), prompt.sum(1) - 1] = False
    return question, attention.bool() & ~question


def _follows_rule(mode: str, tasks: list[str]) -> list[bool]:
    return [mode != "concat" and t in COC_TASKS for t in tasks]


def training_mask(mode: str, prompt: torch.Tensor, target: torch.Tensor, training: bool,
                  tasks: list[str], per_batch: bool = False) -> torch.Tensor:
    """(B, T) mask of the conditioning positions from the prompt / target masks (B, T) of
    examples of ``tasks`` (B,). ``per_batch``: one CoC draw for the whole batch with the
    reference code's thresholds (``model.coc_draw: batch``) instead of a uniform one per
    example."""
    concat = prompt | target
    if mode == "coc":
        if not training:
            return concat
        if per_batch:
            u = torch.rand((1, 1), device=prompt.device)
            choice = (u >= REFERENCE_DRAW[0]).long() + (u >= REFERENCE_DRAW[1]).long()
        else:
            choice = torch.randint(0, 3, (len(prompt), 1), device=prompt.device)
        drawn = torch.where(choice == 0, prompt, torch.where(choice == 1, target, concat))
    else:
        drawn = {"prompt": prompt, "target": target, "concat": concat}[mode]
    rule = torch.tensor(_follows_rule(mode, tasks), dtype=torch.bool, device=prompt.device)
    return torch.where(rule[:, None], drawn, concat)


def inference_condition(mode: str, prompt_hidden: list[torch.Tensor],
                        token_hidden: list[torch.Tensor], tasks: list[str],
                        spans: str = "codes"):
    """Condition at inference: (B, L, H) rows zero padded, validity mask (B, L) and condition
    positions (B, L): each row's index in the LLM sequence (prompt, then generated tokens) + 1,
    as in training (``gather_positions``). ``spans`` as in ``condition_spans``: with
    ``reference`` the prompt's last row (``<boa>``) opens the answer, and ``token_hidden``
    holds the end-of-audio row too (the reference conditions on ``</audio>``)."""
    rows, positions = [], []
    for p, t, rule in zip(prompt_hidden, token_hidden, _follows_rule(mode, tasks)):
        pos = torch.arange(1, len(p) + len(t) + 1, device=p.device)
        cut = len(p) - (spans == "reference")
        part = {"prompt": slice(0, cut), "target": slice(cut, None)}.get(
            mode if rule else "concat", slice(None))
        rows.append(torch.cat([p, t])[part])
        positions.append(pos[part, None])
    cond, valid = pad_rows(rows)
    pos, _ = pad_rows(positions)
    return cond, valid, pos[..., 0].long()


def inference_rows(mode: str, prompt_hidden: list[torch.Tensor],
                   token_hidden: list[torch.Tensor],
                   tasks: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows and validity of ``inference_condition`` (without positions)."""
    return inference_condition(mode, prompt_hidden, token_hidden, tasks)[:2]


def _packed(mask: torch.Tensor):
    """Sequence indices of the set positions of ``mask`` (B, T), packed left, + validity."""
    lengths = mask.sum(1)
    width = max(int(lengths.max()), 1) if len(lengths) else 1
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=mask.device)[None, :] < lengths[:, None]
    return order, valid


def gather_rows(h: torch.Tensor, mask: torch.Tensor):
    """Rows of ``h`` (B, T, H) where ``mask`` (B, T) is set, packed left: (B, L, H), (B, L)."""
    order, valid = _packed(mask)
    rows = h.gather(1, order.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
    return rows * valid.unsqueeze(-1).to(rows.dtype), valid


def gather_positions(mask: torch.Tensor) -> torch.Tensor:
    """Condition positions of the rows ``gather_rows`` packs (B, L): their index in the
    (right padded) LLM sequence + 1, the speaker frame being 0. The reference adds positions
    over the whole sequence and masks the rest, so a target-only condition starts after the
    prompt, not at 1; padding gets 0."""
    order, valid = _packed(mask)
    return (order + 1) * valid


def pad_rows(rows: list[torch.Tensor]):
    """List of (L_i, H) -> (B, L, H) zero padded + validity mask."""
    width = max(max(len(r) for r in rows), 1)
    out = rows[0].new_zeros(len(rows), width, rows[0].shape[-1])
    valid = torch.zeros(len(rows), width, dtype=torch.bool, device=out.device)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
        valid[i, :len(r)] = True
    return out, valid
