"""Control decodes: what a metric would read if the model had learnt nothing (``decode.control``).

A number means little without the number luck gives. Each control writes the same
``<test_set>/hyp.jsonl`` layout as a model decode, so the scorer scores it the same way:

* ``shuffled_speech`` (understanding tasks): the trained model, but every test example's input
  speech is another test example's (a seeded derangement over the decoded ids). What the model
  still gets right comes from the text prompt and its priors, not from listening.
* ``untrained`` (generation tasks): the DualSpeechLM as its config builds it before any training
  step (same config, same seed; the trained weights are not loaded).
* ``resynth`` (generation tasks): no model; the reference speech's own codec ids decoded by the
  codec: the best a model that predicts the codec ids perfectly can sound.
* ``ground_truth`` (ASR and generation tasks): no model; the reference recording itself (ASR:
  the input speech, which the scorer transcribes). The paper's ground-truth row.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from dualspeech.audio import load_cut_audio
from dualspeech.data.tasks import TASKS
from dualspeech.inference.config import CONTROL_TASKS
from dualspeech.inference.generate import Output
from dualspeech.inference.runner import DecodeRunner

log = logging.getLogger(__name__)


def control_tasks(control: str | None, tasks: list[str]) -> list[str]:
    """The tasks of ``tasks`` a control applies to (all of them without a control)."""
    if control is None:
        return list(tasks)
    return [t for t in tasks if t in CONTROL_TASKS[control]]


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of range(n) without fixed points (Sattolo's single cycle)."""
    perm = np.arange(n)
    rng = np.random.default_rng(seed)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def shuffle_input_speech(examples: list, seed: int) -> list:
    """Each example (sorted by id) reads the input speech of another; text fields stay its own."""
    from dualspeech.data.dataset import Example

    examples = sorted(examples, key=lambda ex: ex.id)
    if len(examples) < 2:
        log.warning("shuffled_speech: %d example(s), nothing to shuffle with", len(examples))
        return examples
    perm = derangement(len(examples), seed)
    out = []
    for ex, j in zip(examples, perm):
        donor = examples[j]
        speech = {**ex.speech, **{r: donor.speech[r] for r in TASKS[ex.task].input_speech}}
        out.append(Example(ex.task, ex.cut, speech))
    return out


def untrained_model(model):
    """The same DualSpeechLM at initialisation: built from its own config and vocabulary."""
    from dualspeech.models.dualspeechlm import DualSpeechLM

    emb = model.llm.get_input_embeddings().weight
    if emb.shape[0] >= model.vocab.size:
        raise ValueError("decode.control=untrained needs an unmerged model (exp dir or exported "
                         "model/): a merged LLM already carries the trained speech rows")
    with torch.random.fork_rng(devices=[]):   # LoRA A draws from the global RNG (B starts at 0)
        torch.manual_seed(model.cfg.seed)
        fresh = DualSpeechLM.from_config(model.full_config, model.vocab)
    return fresh.to(emb.device).eval()


class ShuffledSpeechRunner(DecodeRunner):
    def select_examples(self, examples: list, all_ids: list[str]) -> list:
        wanted = set(all_ids)
        return shuffle_input_speech([ex for ex in examples if ex.id in wanted], self.cfg.seed)


def _speaker(ex, role: str):
    """The voice a speaker-conditioned codec resynthesises reference ids with: the prompt
    speaker the model is conditioned on, else the reference speech's own (None: neither has
    an embedding, and the codec uses its mean voice)."""
    for cut in (ex.speech.get("speaker_ref"), ex.speech[role]):
        if cut is not None and cut.has_custom("speaker_embedding"):
            return cut.load_custom("speaker_embedding")
    return None


class ReferenceRunner(DecodeRunner):
    """Writes reference speech instead of running the model (``resynth``, ``ground_truth``)."""

    def _outputs(self, ds, task: str, chunk: list) -> list[Output]:
        role = TASKS[task].output_speech or "primary"   # ASR: the input speech is the reference
        try:
            return self._references(chunk, role)
        except Exception as e:  # noqa: BLE001 - e.g. a codec that cannot decode these ids
            log.error("%s: %s", task, e)
            return [Output("error", error=f"{type(e).__name__}: {e}"[:500]) for _ in chunk]

    def _references(self, chunk: list, role: str) -> list[Output]:
        if self.cfg.control == "ground_truth":
            return [self._recording(ex.speech[role]) for ex in chunk]
        from dualspeech.data.encoding import load_tokens

        agpt = self.model.cfg.acoustic_gpt
        field = agpt.field if agpt is not None else self.model.vocab.cfg.field
        codes = [load_tokens(ex.speech[role], field).astype(np.int64) for ex in chunk]
        waves = self.generator.codec.decode(codes, [_speaker(ex, role) for ex in chunk])
        return [Output("ok", wave=w, n_acoustic=len(c)) for w, c in zip(waves, codes)]

    def _recording(self, cut) -> Output:
        if not cut.has_recording:
            return Output("error", error=f"reference cut {cut.id} has no recording")
        try:
            return Output("ok", wave=load_cut_audio(cut, self._sample_rate()))
        except Exception as e:  # noqa: BLE001 - lhotse raises several types; recorded per example
            return Output("error", error=f"{type(e).__name__}: {e}"[:500])


def make_runner(model, cfg, codec=None, data_cfg=None) -> DecodeRunner:
    """The runner for ``cfg.control`` (a plain DecodeRunner without one)."""
    if cfg.control == "untrained":
        model = untrained_model(model)
    cls = {"shuffled_speech": ShuffledSpeechRunner, "resynth": ReferenceRunner,
           "ground_truth": ReferenceRunner}.get(cfg.control, DecodeRunner)
    if cfg.control == "resynth" and codec is None:
        raise ValueError("decode.control=resynth needs the codec (--codec-conf or decode.codec)")
    return cls(model, cfg, codec, data_cfg)
