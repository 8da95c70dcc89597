"""Changed arguments never reuse stale work (issue 15 item 9): the experiment and decode
directories are tagged with a hash of --train-args / --decode-args, and an experiment directory
refuses to resume under edited config files. Stages 6-7 of the real pipeline run with a fake
--python that records each call and makes the outputs the stages check."""
from __future__ import annotations

from pathlib import Path

import pytest

from fake_recipe import make_fake_recipe, run_pipeline

FAKE_PYTHON = """#!/usr/bin/env bash
# records the call; makes <exp-dir>/model (train) or <out-dir>/<shard> (decode)
echo "$*" >> "$(dirname "$0")/calls.log"
while [ $# -gt 0 ]; do
  case $1 in
    --exp-dir) mkdir -p "$2/model"; echo "$*" >> "$2/model/args" ;;
    --out-dir) mkdir -p "$2"; echo decoded > "$2/shard.txt" ;;
  esac
  shift
done
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    return make_fake_recipe(tmp_path, FAKE_PYTHON)


pipeline = run_pipeline


def exp_dirs(recipe: Path) -> list[str]:
    return sorted(p.parent.name for p in (recipe / "exp").glob("*/model"))


def test_changed_train_args_train_in_another_directory(recipe):
    first = pipeline(recipe, "--stage", "6", "--stop-stage", "6", "--train-args", "--set trainer.lr=1e-3")
    assert first.returncode == 0, first.stderr
    [old] = exp_dirs(recipe)
    assert old.startswith("train_") and old != "train"
    second = pipeline(recipe, "--stage", "6", "--stop-stage", "6", "--train-args", "--set trainer.lr=1e-4")
    assert second.returncode == 0, second.stderr
    assert len(exp_dirs(recipe)) == 2 and old in exp_dirs(recipe)     # nothing resumed from old
    assert "lr=1e-4" not in (recipe / "exp" / old / "model/args").read_text()
    plain = pipeline(recipe, "--stage", "6", "--stop-stage", "6")
    assert plain.returncode == 0 and "train" in exp_dirs(recipe)        # no args: the config name


def test_edited_config_refuses_to_resume(recipe):
    assert pipeline(recipe, "--stage", "6", "--stop-stage", "6").returncode == 0
    (recipe / "conf/train.yaml").write_text("trainer:\n  max_steps: 20\n")
    proc = pipeline(recipe, "--stage", "6", "--stop-stage", "6")
    assert proc.returncode != 0
    assert "exp/train holds a run of other config files" in proc.stderr
    assert "before: conf/train.yaml" in proc.stderr and "now:    conf/train.yaml" in proc.stderr
    assert (recipe / "exp/train/model/args").read_text().count("--exp-dir") == 1   # not re-run


def test_changed_decode_args_keep_the_previous_decode(recipe):
    assert pipeline(recipe, "--stage", "6", "--stop-stage", "6").returncode == 0
    a = pipeline(recipe, "--stage", "7", "--stop-stage", "7", "--decode-args", "--set decode.beam=1")
    assert a.returncode == 0, a.stderr
    b = pipeline(recipe, "--stage", "7", "--stop-stage", "7", "--decode-args", "--set decode.beam=4")
    assert b.returncode == 0, b.stderr
    decodes = sorted(p.name for p in (recipe / "exp/train").glob("decode_*"))
    assert len(decodes) == 2 and all((recipe / "exp/train" / d / "shard.txt").is_file() for d in decodes)


def test_speech_init_method_is_read_with_the_train_args(tmp_path):
    """--train-args overriding model.speech_init.method decides which checkpoint stage 6 passes,
    as it decides how training initialises (the config is resolved with the same --set)."""
    recipe = make_fake_recipe(tmp_path, FAKE_PYTHON)   # resolve_config runs for real
    (recipe / "tok.pt").write_bytes(b"tokenizer")
    run = pipeline(recipe, "--stage", "6", "--stop-stage", "6", "--ustokenizer-ckpt", "tok.pt",
                   "--train-args", "--set +model.speech_init.method=ustokenizer")
    assert run.returncode == 0, run.stderr
    [train] = [c for c in (recipe / "calls.log").read_text().splitlines() if "bin.train " in c]
    assert "--set model.speech_init.ustokenizer_ckpt=tok.pt" in train
