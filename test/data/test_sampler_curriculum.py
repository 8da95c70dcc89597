"""The sampler's curriculum: task weights by optimizer step, across epochs, resumed exactly."""
import json

import numpy as np
import pytest

from dualspeech.data.sampler import SamplerConfig, TaskBatchSampler

LENGTHS = {t: np.random.default_rng(k).integers(20, 300, n)
           for k, (t, n) in enumerate((("asr", 40), ("tts", 30), ("ser", 20)))}
CURRICULUM = [{"steps": 20, "weights": {"ser": 1}},
              {"steps": 15, "weights": {"asr": 1, "ser": 0}}]


def make(world=1, rank=0, per_step=2, curriculum=CURRICULUM, mode="per_task"):
    cfg = SamplerConfig(weights={"asr": .5, "tts": .5, "ser": 0}, mode=mode, max_tokens=600,
                        max_batch_size=4, buffer_batches=2, curriculum=curriculum)
    return TaskBatchSampler(LENGTHS, cfg, rank=rank, world_size=world, batches_per_step=per_step)


def epochs(sampler, n):
    out = []
    for e in range(n):
        sampler.set_epoch(e)
        out.append(list(sampler))
    return out


def test_phases_follow_the_optimizer_step_across_epochs():
    per_epoch = epochs(make(per_step=2), 4)
    assert len(per_epoch[0]) < 40          # the first phase runs on into the next epoch
    flat = [b for ep in per_epoch for b in ep]
    tasks = [{t for t, _ in b} for b in flat]
    assert all(t == {"ser"} for t in tasks[:40])              # 20 steps x 2 batches
    assert all(t == {"asr"} for t in tasks[40:70])            # 15 steps x 2 batches
    assert {"asr", "tts"} == set().union(*tasks[70:]) and {"ser"} not in tasks[70:]
    # an epoch ends at the same number of examples with or without a curriculum
    assert sum(len(b) for b in per_epoch[1]) >= sum(len(v) for v in LENGTHS.values())


def test_a_jump_to_a_later_epoch_draws_what_iterating_would():
    sequential = epochs(make(), 3)[2]
    jumped = make()
    jumped.set_epoch(2)
    assert list(jumped) == sequential


@pytest.mark.parametrize("mode,world", [("per_task", 1), ("mixed", 2)])
def test_resume_inside_the_curriculum_is_exact(mode, world):
    s = make(world=world, rank=world - 1, mode=mode)
    full = epochs(s, 2)[1]
    s.set_epoch(1)
    it = iter(s)
    for _ in range(9):                  # 6 consumed, 3 prefetched
        next(it)
    state = json.loads(json.dumps(s.state_dict(6)))
    resumed = make(world=world, rank=world - 1, mode=mode)
    resumed.load_state_dict(state)       # knows where the curriculum stands without epoch 0
    resumed.set_epoch(1)
    assert list(resumed) == full[6:]
    resumed.set_epoch(2)
    assert list(resumed) == epochs(make(world=world, rank=world - 1, mode=mode), 3)[2]


def test_ranks_count_steps_together():
    ranks = [[b for ep in epochs(make(world=2, rank=r, per_step=1), 3) for b in ep]
             for r in (0, 1)]
    merged = [b for pair in zip(*ranks) for b in pair]
    assert [{t for t, _ in b} for b in merged[:40]] == [{"ser"}] * 40   # 20 steps x 2 ranks
    assert {t for b in merged[40:70] for t, _ in b} == {"asr"}


def test_a_changed_curriculum_refuses_the_old_state():
    s = make()
    s.set_epoch(0)
    next(iter(s))
    state = s.state_dict(1)
    with pytest.raises(ValueError, match="other data or settings"):
        make(curriculum=CURRICULUM[:1]).load_state_dict(state)


@pytest.mark.parametrize("curriculum,match", [
    ([{"steps": 0, "weights": {"asr": 1}}], r"curriculum\[0\].steps must be an integer >= 1"),
    ([{"weights": {"asr": 1}}], r"curriculum\[0\] must be \{steps: N"),
    ([{"steps": 3, "weights": {"asr": -1}}], r"curriculum\[0\].weights must be >= 0"),
])
def test_malformed_phases_are_named(curriculum, match):
    with pytest.raises(ValueError, match=match):
        SamplerConfig(curriculum=curriculum)


def test_a_phase_without_data_is_named():
    with pytest.raises(ValueError, match=r"curriculum\[0\].weights"):
        make(curriculum=[{"steps": 3, "weights": {"sqa": 1}}])
