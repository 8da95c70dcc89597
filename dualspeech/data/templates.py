"""Prompt templates for the 8 tasks: token ids + label masks, from one registry.

The prompt *texts* come from the config (``templates.prompts``); this module fixes which
inputs each task may show the LLM (``PROMPT_INPUTS``: never its own answer) and how a prompt
becomes tokens:

* placeholders ``{speech}`` (the primary input speech) and ``{question_speech}`` (SC's spoken
  question) become ``<boa> s_i ... <eoa>``; text placeholders are filled from the example;
* the prompt is wrapped by the backbone's chat template (``chat_template: true``) or by
  ``user_format`` (SALMONN style ``USER: ... ASSISTANT:`` by default);
* understanding tasks append the answer text + eos, labelled for the text loss;
* generation tasks append ``<boa>`` (end of the prompt: decoding starts right after it), then
  the target speech tokens + ``<eoa>``, labelled for the semantic loss.

``format: reference`` renders what the reference code (lavendery/UUG, its data pipeline) trains
on instead: bos + ``REFERENCE_FORMAT`` with its per-task texts, no chat template, no space token
before a speech span, and generation answers ``<boa>`` codes ``<eoa>`` eos, all labelled
(decoding still feeds ``<boa>`` as the last prompt token). docs/model.md gives the assumptions.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

import torch

from dualspeech.data.tasks import TASKS
from dualspeech.data.vocab import SpeechVocab

IGNORE = -100
SPEECH_PLACEHOLDERS = {"speech": "primary", "question_speech": "question"}
PROMPT_INPUTS = {
    "asr": ("speech",),
    "s2tt": ("speech", "source_lang", "target_lang"),
    "ser": ("speech",),
    "sqa": ("speech", "question"),
    "tts": ("text",),
    "t2st": ("source_text", "source_lang", "target_lang"),
    "vc": ("speech",),
    "sc": ("speech", "question_speech"),
}
LANG_NAMES = {"en": "English", "de": "German", "es": "Spanish", "fr": "French"}
DEFAULT_PROMPTS = {
    "asr": "Transcribe the speech into text. {speech}",
    "s2tt": "Translate the {source_lang} speech into {target_lang} text. {speech}",
    "ser": "Which emotion does the speaker express: neutral, happy, sad or angry? {speech}",
    "sqa": "{speech} Answer the question about the speech: {question}",
    "tts": "Read the following text aloud: {text}",
    "t2st": "Speak the {target_lang} translation of this {source_lang} text: {source_text}",
    "vc": "Repeat the speech in the voice of the target speaker. {speech}",
    "sc": "{speech} Answer the spoken question with speech. {question_speech}",
}

FORMATS = ("ours", "reference")
REFERENCE_FORMAT = "{system} USER: {content}\nASSISTANT: "
REFERENCE_SYSTEM = {   # the reference data pipeline's system messages (torchdata_sft_speech_latest.py)
    "asr": "Recognize the speech and give me the transcription.",
    "s2tt": "Please translate the {source_lang} speech into {target_lang} text transcription.",
    "ser": "Please describe the emotion of the speaker.",
    "sqa": "Based on the content, provide a text-based answer to the question.",
    "tts": "Please read this sentence out loud.",
    "t2st": "Please translate the {source_lang} text into {target_lang} speech.",
    "vc": "Without altering the spoken content, transform the speaker's voice in this speech to "
          "match the target voice.",
    "sc": "Please listen to the speech content and provide a spoken answer to the question.",
}
REFERENCE_CONTENT = {  # ... and its user turns ({content})
    "asr": "{speech}", "s2tt": "{speech}", "ser": "{speech}", "vc": "{speech}",
    "sqa": "The content is: {speech}\nThe question is: {question}",
    "tts": "{text}", "t2st": "{source_text}",
    "sc": "The speech content is: {speech}\nThe question is: {question_speech}",
}


@dataclass
class TemplateConfig:
    """``templates`` config section."""
    format: str = "ours"               # ours | reference (the reference code's layout, above)
    chat_template: bool = False        # wrap prompts with the backbone's chat template
    system: str | None = None          # system message (chat template only)
    user_format: str = "USER: {prompt}\nASSISTANT:"
    prompts: dict = field(default_factory=lambda: dict(DEFAULT_PROMPTS))

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"templates.format={self.format!r}; use one of {FORMATS}")
        if self.format == "reference" and (self.chat_template or self.system or self.prompts
                                           != DEFAULT_PROMPTS or self.user_format != USER_FORMAT):
            raise ValueError("templates.format: reference has its own layout and texts "
                             "(REFERENCE_FORMAT, REFERENCE_SYSTEM, REFERENCE_CONTENT in "
                             "dualspeech/data/templates.py; bos, no chat template): leave "
                             "chat_template, system, user_format and prompts unset")


USER_FORMAT = TemplateConfig.user_format


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]                  # IGNORE where not supervised (aligned with input_ids)
    prompt_len: int                    # tokens fed at inference (generation: ends with <boa>)
    target_span: tuple[int, int] | None = None   # generation: [start, end) of target speech


_SENTINEL = "\u27e6speech:{}\u27e7"          # survives chat templates; split on below
_SENTINEL_RE = re.compile("\u27e6speech:(\\w+)\u27e7")


class TaskTemplates:
    """Renders task examples with one tokenizer + speech vocabulary."""

    def __init__(self, cfg: TemplateConfig, vocab: SpeechVocab):
        self.cfg, self.vocab, self.tok = cfg, vocab, vocab.tokenizer
        unknown = sorted(set(cfg.prompts) - set(TASKS))
        if unknown:
            raise ValueError(f"templates.prompts: unknown task(s) {unknown}; tasks: {sorted(TASKS)}")
        self.reference = cfg.format == "reference"
        self.prompts = dict(REFERENCE_CONTENT) if self.reference else {**DEFAULT_PROMPTS,
                                                                        **cfg.prompts}
        for task, text in self.prompts.items():
            if self.reference:
                text = REFERENCE_SYSTEM[task] + " " + text
            used = {f for _, f, _, _ in string.Formatter().parse(text) if f}
            bad = used - set(PROMPT_INPUTS[task])
            if bad:
                raise ValueError(f"templates.prompts.{task} uses {sorted(bad)}; a {task} prompt "
                                 f"may only use {list(PROMPT_INPUTS[task])}")
        if cfg.chat_template and not getattr(self.tok, "chat_template", None):
            raise ValueError("templates.chat_template: true but the backbone tokenizer has no "
                             "chat template; set it to false to use templates.user_format")
        probe = self.tok("a")["input_ids"]
        self.bos = ([self.tok.bos_token_id] if not cfg.chat_template and probe
                    and probe[0] == self.tok.bos_token_id else [])  # only if the backbone uses one
        if self.reference:   # the reference always starts with bos
            if self.tok.bos_token_id is None:
                raise ValueError("templates.format: reference starts every sequence with bos, "
                                 "but the backbone tokenizer has no bos token")
            self.bos = [self.tok.bos_token_id]
        self.eos_id = self.tok.eos_token_id
        if self.eos_id is None:
            raise ValueError("the backbone tokenizer has no eos token: answers need one")
        self.end_ids = sorted({self.eos_id, *self._turn_end_ids()})   # ids that end an answer

    def _turn_end_ids(self) -> list[int]:
        """The special token the chat template closes an assistant turn with (Phi-3.5:
        ``<|end|>``, not its eos ``<|endoftext|>``); none without a chat template."""
        if not self.cfg.chat_template:
            return []
        marker = "\u27e6answer\u27e7"
        text = self.tok.apply_chat_template(
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": marker}],
            tokenize=False)
        after = self._text_ids(text.split(marker, 1)[1].lstrip(" ")) if marker in text else []
        added = set(self.tok.get_added_vocab().values())
        return after[:1] if after and after[0] in added else []

    # -- prompt rendering ---------------------------------------------------------------------
    def _segments(self, task: str, fields: dict) -> list[str | tuple[str]]:
        """Prompt as text pieces and ("speech role",) markers, wrapped by the chat layout."""
        values = {}
        for name in PROMPT_INPUTS[task]:
            if name in SPEECH_PLACEHOLDERS:
                values[name] = _SENTINEL.format(SPEECH_PLACEHOLDERS[name])
            elif name.endswith("_lang"):
                values[name] = LANG_NAMES.get(fields[name], fields[name])
            else:
                values[name] = fields[name]
        prompt = self.prompts[task].format(**values)
        if self.reference:
            text = REFERENCE_FORMAT.format(system=REFERENCE_SYSTEM[task].format(**values),
                                           content=prompt)
        elif self.cfg.chat_template:
            messages = ([{"role": "system", "content": self.cfg.system}] if self.cfg.system
                        else []) + [{"role": "user", "content": prompt}]
            text = self.tok.apply_chat_template(messages, tokenize=False,
                                                add_generation_prompt=True)
        else:
            text = self.cfg.user_format.format(prompt=prompt)
        parts = _SENTINEL_RE.split(text)
        if self.reference:   # the space before "<audio>" is not a token there (docs/model.md)
            parts = [p.rstrip(" ") if i % 2 == 0 and i + 1 < len(parts) else p
                     for i, p in enumerate(parts)]
        # odd indices are the captured speech roles
        return [p if i % 2 == 0 else (p,) for i, p in enumerate(parts) if p or i % 2]

    def _text_ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"] if text else []

    def _prompt_ids(self, task: str, fields: dict, speech: dict) -> list[int]:
        ids = list(self.bos)
        for seg in self._segments(task, fields):
            if isinstance(seg, tuple):
                ids += [self.vocab.begin_audio_id, *self.vocab.speech_ids(speech[seg[0]]).tolist(),
                        self.vocab.end_audio_id]
            else:
                ids += self._text_ids(seg)
        return ids

    # -- public -------------------------------------------------------------------------------
    def encode(self, task: str, fields: dict, speech: dict, target=None,
               with_answer: bool = True) -> Encoded:
        """Tokens + labels of one example.

        ``speech`` maps roles ("primary", "question") to 1-D speech codes; ``target`` holds
        the output speech codes (generation tasks). ``with_answer=False`` gives the prompt
        alone (inference)."""
        spec = TASKS[task]
        ids = self._prompt_ids(task, fields, speech)
        if spec.kind == "generation":
            ids.append(self.vocab.begin_audio_id)
        prompt_len = len(ids)
        labels = [IGNORE] * prompt_len
        if not with_answer:
            return Encoded(ids, labels, prompt_len)
        if spec.kind == "understanding":
            answer = self._text_ids(str(fields[spec.answer_field])) + [self.eos_id]
            return Encoded(ids + answer, labels + answer, prompt_len)
        if target is None:
            raise ValueError(f"{task}: a generation example needs target speech codes")
        codes = self.vocab.speech_ids(target).tolist()
        if self.reference:   # the reference labels <boa> and ends the answer with eos
            labels[-1] = self.vocab.begin_audio_id
        tgt = codes + [self.vocab.end_audio_id] + ([self.eos_id] if self.reference else [])
        return Encoded(ids + tgt, labels + tgt, prompt_len,
                       (prompt_len, prompt_len + len(codes)))

    def length(self, task: str, fields: dict, speech_lens: dict, target_len: int = 0) -> int:
        """Token count of ``encode(...)`` from lengths alone (for bucketing; no array loads)."""
        n = len(self.bos)
        for seg in self._segments(task, fields):
            n += speech_lens[seg[0]] + 2 if isinstance(seg, tuple) else len(self._text_ids(seg))
        spec = TASKS[task]
        if spec.kind == "understanding":
            return n + len(self._text_ids(str(fields[spec.answer_field]))) + 1
        return n + 1 + target_len + 1 + self.reference


def prompt_batch(encoded: list[Encoded], pad_id: int) -> dict:
    """Inference inputs of encoded prompts: ``input_ids`` and ``attention_mask``, left padded
    (a batch then gives the same greedy output as one prompt at a time)."""
    return {"input_ids": pad_batch([e.input_ids for e in encoded], pad_id, left=True),
            "attention_mask": pad_batch([[1] * len(e.input_ids) for e in encoded], 0, left=True)}


def pad_batch(seqs: list[list[int]], pad: int, left: bool = False) -> torch.Tensor:
    """Pad lists of ids into a (B, T) LongTensor on the right (training) or left (inference)."""
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            sl = slice(width - len(s), width) if left else slice(0, len(s))
            out[i, sl] = torch.tensor(s)
    return out
