"""Understanding prompts for the USTokenizer's LLM loss: text -> token ids around the speech.

Layout (SALMONN style, from ``prompts.user_format``)::

    [prefix ids] [speech embeddings] [suffix ids: rest of the prompt] [answer ids + eos]

Only the answer (and eos) is labelled; prompt and speech positions get -100.
"""
from __future__ import annotations

import logging

from dualspeech.data.tasks import TASKS
from dualspeech.tokenizers.ustokenizer.config import PromptConfig

log = logging.getLogger(__name__)

IGNORE = -100


class PromptBuilder:
    def __init__(self, cfg: PromptConfig, tokenizer):
        fmt = cfg.user_format
        if fmt.count("{speech}") != 1 or fmt.count("{instruction}") != 1:
            raise ValueError("prompts.user_format must contain {speech} and {instruction} exactly "
                             f"once each, got {fmt!r}")
        if fmt.index("{speech}") > fmt.index("{instruction}"):
            raise ValueError("prompts.user_format: {speech} must come before {instruction}")
        for task in ("asr", "ser", "sqa"):
            for p in cfg.for_task(task):
                if ("{question}" in p) != (task == "sqa"):
                    raise ValueError(f"prompts.{task}: {p!r}: the sqa prompts must contain "
                                     "{question}, the others must not")
        if tokenizer.eos_token_id is None:
            raise ValueError("the LLM tokenizer has no eos token")
        self.cfg, self.tok = cfg, tokenizer
        before, self.after = fmt.split("{speech}")
        self.prefix = tokenizer(before).input_ids  # adds BOS where the tokenizer does
        self._warned_long = False

    def num_variants(self, task: str) -> int:
        return len(self.cfg.for_task(task))

    def build(self, task: str, fields: dict, variant: int) -> tuple[list[int], list[int], list[int]]:
        """(prefix, suffix, answer) ids of one example; ``variant`` picks the paraphrase."""
        instruction = self.cfg.for_task(task)[variant % self.num_variants(task)]
        instruction = instruction.replace("{question}", str(fields.get("question", "")))
        suffix = self.tok(self.after.replace("{instruction}", instruction),
                          add_special_tokens=False).input_ids
        text = str(fields[TASKS[task].answer_field]).strip()
        answer = self.tok((" " if self.cfg.answer_space else "") + text,
                          add_special_tokens=False).input_ids
        if len(answer) > self.cfg.max_answer_tokens:
            if not self._warned_long:
                log.warning("answers longer than prompts.max_answer_tokens=%d are cut",
                            self.cfg.max_answer_tokens)
                self._warned_long = True
            answer = answer[: self.cfg.max_answer_tokens]
        return self.prefix, suffix, answer + [self.tok.eos_token_id]
