"""What the paper configs compute against the reference code's computation (issue 22).

The reference (lavendery/UUG) is not copied here: each test states the reference's rule in
words and builds the expected value from our own modules.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dualspeech.config import build
from dualspeech.data.dataset import DataConfig, TaskDataset, load_examples
from dualspeech.models import coc
from dualspeech.testing.toy import toy_data, toy_model

DEBUG = Path(__file__).resolve().parents[1] / "egs/mini/conf/dualspeechlm_debug.yaml"


def test_target_condition_positions_continue_after_the_prompt():
    prompt = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]).bool()
    target = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 0]]).bool()
    # speaker frame = 0, the hidden state at sequence index t sits at t + 1; padding 0
    assert coc.gather_positions(target).tolist() == [[4, 5, 0], [3, 4, 5]]
    assert coc.gather_positions(prompt).tolist() == [[1, 2, 3], [1, 2, 0]]
    assert coc.gather_positions(prompt | target).tolist() == [[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]]


def test_inference_positions_follow_the_same_rule():
    p = [torch.ones(3, 2), torch.ones(2, 2)]
    t = [torch.full((2, 2), 2.0), torch.full((1, 2), 2.0)]
    rows, valid, pos = coc.inference_condition("target", p, t, ["tts", "sc"])
    assert pos.tolist() == [[4, 5, 0], [1, 2, 3]]        # SC: always the concatenation
    assert rows[0, :2, 0].tolist() == [2.0, 2.0] and valid.sum(1).tolist() == [2, 3]
    _, _, pos = coc.inference_condition("prompt", p, t, ["vc", "tts"])
    assert pos.tolist() == [[1, 2, 3], [1, 2, 0]]


@pytest.fixture(scope="module")
def tts_batch(tmp_path_factory):
    model, cfg = toy_model(DEBUG, ["model.lora.rank=0", "model.condition=target"])
    root = toy_data(tmp_path_factory.mktemp("ref") / "data", cfg, n_per_task=3)
    examples = load_examples(root, ["toy:test"])
    ds = TaskDataset({"tts": examples["tts"]}, model.templates,
                     build(DataConfig, cfg["data"], "data"), model.acoustic_spec())
    return model, ds.collate(examples["tts"])


def _reference_acoustic_ce(model, batch, cond_mask):
    """The reference's AcousticGPT loss: the adapter over EVERY LLM hidden state, the speaker
    frame in front, condition positions 0..T over that whole sequence, and the frames outside
    the condition mask left out of attention only."""
    gpt = model.acoustic_gpt
    h, _ = model.hidden(batch["input_ids"], batch["attention_mask"])
    idx = batch["acoustic_index"]
    h, cond_mask = h[idx], cond_mask[idx]
    B, T = cond_mask.shape
    prefix = torch.cat([gpt.spk_proj(batch["speaker_embedding"]).unsqueeze(1), gpt.adapter(h)], 1)
    prefix = prefix + gpt.cpe(torch.arange(T + 1))[None]
    tokens, tmask = batch["acoustic_tokens"], batch["acoustic_mask"].bool()
    x = torch.cat([prefix, gpt._tokens(tokens, (tmask.long().cumsum(1) - 1).clamp(min=0))], 1)
    valid = torch.cat([torch.ones(B, 1, dtype=torch.bool), cond_mask, tmask], 1)
    is_prefix = torch.zeros_like(valid)
    is_prefix[:, :T + 1] = True
    out, _ = gpt._run(x, gpt._full_mask(valid, is_prefix))
    logits = gpt._logits(out[:, T + 1:])
    target = tokens[:, 1:].masked_fill(~tmask[:, 1:], -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1),
                           ignore_index=-100)


def test_target_only_condition_matches_the_full_sequence_computation(tts_batch):
    """Chain-of-Condition's answer-only condition: the reference masks the question out of a
    condition that keeps every position, so the answer frames keep positions that continue
    after the question (they used to restart at 1)."""
    model, batch = tts_batch
    with torch.no_grad():
        ours = model(batch)["acoustic_ce"]
        ref = _reference_acoustic_ce(model, batch, batch["target_mask"])
        concat = _reference_acoustic_ce(model, batch, batch["target_mask"] | batch["prompt_mask"])
    assert abs(float(ours) - float(ref)) < 1e-5, (float(ours), float(ref))
    assert abs(float(ours) - float(concat)) > 1e-4      # the masks do differ
