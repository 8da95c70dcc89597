"""LLM-judge score for SQA and SC answers (the paper's "ChatGPTScore"), off by default.

Any OpenAI-compatible chat-completions endpoint: the base URL and the API key are read from
environment variables whose NAMES are configured (defaults ``DUALSPEECH_JUDGE_URL`` and
``DUALSPEECH_JUDGE_KEY``). The key is sent only in the Authorization header; it is never
logged, written to results or put in an error message. The prompt below is our own: it asks for
one integer from 1 to 100 covering relevance, fluency and correctness, which we parse.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You grade answers of a spoken question-answering system. You receive the context the "
    "question is about (if any), the question, a reference answer and the system's answer. "
    "Judge the system's answer for relevance to the question, fluency, and correctness "
    "against the reference. Reply with one line of the form 'Score: N' where N is an integer "
    "from 1 (useless) to 100 (as good as the reference), and nothing else.")


@dataclass
class JudgeConfig:
    enabled: bool = False
    url_env: str = "DUALSPEECH_JUDGE_URL"   # base URL, e.g. https://host/v1
    key_env: str = "DUALSPEECH_JUDGE_KEY"
    model: str = "gpt-4o-mini"
    timeout_s: float = 60.0
    retries: int = 2
    max_tokens: int = 16


class JudgeError(RuntimeError):
    """The judge endpoint could not be used (missing settings, HTTP errors, unparsable reply)."""


def user_prompt(question: str, reference: str, answer: str, context: str = "") -> str:
    parts = [f"Context: {context}"] if context else []
    parts += [f"Question: {question}", f"Reference answer: {reference}",
              f"System answer: {answer or '(empty)'}"]
    return "\n".join(parts)


def parse_score(reply: str) -> int:
    """'Score: 87' (or a lone integer) -> 87; anything outside 1..100 is an error."""
    m = re.search(r"score\s*[:=]\s*(\d+)", reply, re.I) or re.fullmatch(r"\s*(\d+)\s*\.?\s*", reply)
    if not m:
        raise JudgeError(f"judge reply has no score: {reply[:80]!r}")
    value = int(m.group(1))
    if not 1 <= value <= 100:
        raise JudgeError(f"judge score {value} outside 1..100")
    return value


class LLMJudge:
    def __init__(self, cfg: JudgeConfig):
        url, key = os.environ.get(cfg.url_env), os.environ.get(cfg.key_env)
        if not url or not key:
            raise JudgeError(f"LLM judge enabled but ${cfg.url_env} and/or ${cfg.key_env} are "
                             "not set; export the endpoint's base URL and API key, or disable "
                             "the judge (judge.enabled=false)")
        self.cfg = cfg
        self._endpoint = url.rstrip("/") + "/chat/completions"
        self._key = key

    def __repr__(self) -> str:  # never show the key
        return f"LLMJudge(endpoint={self._endpoint!r}, model={self.cfg.model!r})"

    def _post(self, payload: dict) -> dict:
        req = urllib.request.Request(
            self._endpoint, data=json.dumps(payload).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"})
        with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
            return json.loads(resp.read().decode())

    def score(self, question: str, reference: str, answer: str, context: str = "") -> int:
        payload = {"model": self.cfg.model, "temperature": 0.0, "max_tokens": self.cfg.max_tokens,
                   "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                {"role": "user", "content": user_prompt(question, reference,
                                                                        answer, context)}]}
        last = "no attempt"
        for attempt in range(self.cfg.retries + 1):
            try:
                reply = self._post(payload)["choices"][0]["message"]["content"]
                return parse_score(reply)
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                last = type(e).__name__
            except (KeyError, IndexError, TypeError, json.JSONDecodeError):
                last = "malformed response"
            except JudgeError as e:
                last = str(e)
            log.warning("judge request failed (%s), attempt %d/%d", last, attempt + 1,
                        self.cfg.retries + 1)
            time.sleep(min(2.0 ** attempt, 8.0) * 0.1)
        raise JudgeError(f"judge failed after {self.cfg.retries + 1} attempts: {last}")
