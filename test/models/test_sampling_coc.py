"""The one logits sampler (models/sampling.py) and both halves of Chain-of-Condition (models/coc.py)."""
import torch

from dualspeech.models import coc
from dualspeech.models.sampling import sample_logits


def test_sampler_support_follows_top_k_and_top_p():
    logits = torch.tensor([[4.0, 3.0, 2.0, -1.0, -2.0]]).repeat(400, 1)
    gen = torch.Generator().manual_seed(0)
    assert set(sample_logits(logits, 1.0, top_k=2, generator=gen).tolist()) == {0, 1}
    probs = logits[0].softmax(-1)       # top_p just above p0 + p1 keeps three ids
    top_p = float(probs[:2].sum()) + 1e-3
    assert set(sample_logits(logits, 1.0, top_p=top_p, generator=gen).tolist()) == {0, 1, 2}
    assert set(sample_logits(logits, 1.0, generator=gen).tolist()) > {0, 1, 2}


def test_sampler_is_greedy_when_asked_three_ways():
    logits = torch.randn(8, 50)
    best = logits.argmax(-1)
    for kwargs in ({"do_sample": False}, {"temperature": 0.0}, {"top_k": 1}):
        assert torch.equal(sample_logits(logits, **kwargs), best)


def test_coc_training_draws_each_choice_and_eval_uses_the_concatenation():
    torch.manual_seed(0)
    prompt = torch.tensor([[True, True, False, False]]).repeat(300, 1)
    target = torch.tensor([[False, False, True, True]]).repeat(300, 1)
    tasks = ["tts", "vc"] * 150
    drawn = coc.training_mask("coc", prompt, target, training=True, tasks=tasks)
    kinds = {tuple(row.tolist()) for row in drawn}
    assert kinds == {(1, 1, 0, 0), (0, 0, 1, 1), (1, 1, 1, 1)}
    assert coc.training_mask("coc", prompt, target, training=False, tasks=tasks).all()
    assert torch.equal(coc.training_mask("target", prompt, target, training=True, tasks=tasks),
                       target)


def test_t2st_and_sc_always_condition_on_the_concatenation_in_training():
    """CoC (and its fixed ablation modes) cover TTS and VC only (paper); T2ST / SC rows get
    the concatenation in every draw."""
    torch.manual_seed(0)
    prompt = torch.tensor([[True, True, False, False]]).repeat(400, 1)
    target = torch.tensor([[False, False, True, True]]).repeat(400, 1)
    tasks = ["t2st", "sc", "tts", "vc"] * 100
    for mode in coc.CONDITIONS:
        mask = coc.training_mask(mode, prompt, target, training=True, tasks=tasks)
        other = torch.tensor([t in ("t2st", "sc") for t in tasks])
        assert mask[other].all(), mode
        if mode != "concat":   # TTS / VC rows follow the rule: not all concatenations
            assert not mask[~other].all(), mode


def test_coc_inference_rows_concatenate_prompt_and_tokens():
    p = [torch.ones(2, 3), torch.ones(1, 3)]
    t = [torch.full((1, 3), 2.0), torch.full((3, 3), 2.0)]
    rows, valid = coc.inference_rows("coc", p, t, ["tts", "vc"])
    assert rows.shape == (2, 4, 3) and valid.sum(1).tolist() == [3, 4]
    assert rows[0, :3, 0].tolist() == [1.0, 1.0, 2.0] and rows[0, 3].abs().sum() == 0
    prompt_only, _ = coc.inference_rows("prompt", p, t, ["tts", "vc"])
    assert prompt_only.shape == (2, 2, 3)


def test_t2st_and_sc_always_condition_on_the_concatenation_at_inference():
    p = [torch.ones(2, 3), torch.ones(1, 3), torch.ones(2, 3)]
    t = [torch.full((1, 3), 2.0), torch.full((3, 3), 2.0), torch.full((1, 3), 2.0)]
    for mode in ("prompt", "target"):   # the fixed ablation modes touch TTS / VC only
        rows, valid = coc.inference_rows(mode, p, t, ["t2st", "sc", "tts"])
        assert valid.sum(1).tolist()[:2] == [3, 4], mode
        assert int(valid[2].sum()) == (2 if mode == "prompt" else 1), mode
