"""Stale state (issue 27): a stage whose inputs changed, or run with --force, starts its
training from scratch with the old experiment moved aside (never resumed); a damaged or deleted
output is rebuilt without deleting the good ones. The real pipeline runs with a fake --python
that records each call and writes the outputs the stages check."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from fake_recipe import make_fake_recipe, run_pipeline

FAKE_PYTHON = r"""#!/usr/bin/env bash
# appends the call to <dir>/runs of the directory it writes, then makes the stage's outputs
here=$(dirname "$0"); echo "$*" >> "$here/calls.log"
module=$2; shift 2
while [ $# -gt 0 ]; do
  case $1 in
    --exp-dir) mkdir -p "$2"; echo "$module" >> "$2/runs"
               if [ "$module" = dualspeech.bin.train ]; then mkdir -p "$2/model"; echo w > "$2/model/weights"
               else echo ckpt > "$2/final.pt"; fi ;;
    --out-dir) mkdir -p "$2"; echo "$module" >> "$2/runs"; echo codec > "$2/codec.pt"
               echo "codec: {name: melvq, checkpoint: $2/codec.pt}" > "$2/codec.yaml" ;;
    --out-cuts) mkdir -p "$(dirname "$2")"; [ -f "$2" ] || echo "$module" > "$2" ;;
  esac
  shift
done
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    root = make_fake_recipe(tmp_path, FAKE_PYTHON)
    (root / "conf/ust.yaml").write_text("ustokenizer: {}\n")
    (root / "conf/codec.yaml").write_text("codec: {name: melvq}\n")
    (root / "conf/speaker.yaml").write_text("speaker: {}\n")
    for d in ("tasks", "cuts"):
        (root / "data" / d).mkdir(parents=True)
    for part in ("train", "test"):
        (root / f"data/cuts/x_cuts_{part}.jsonl.gz").write_text(part)
    return root


def stages(recipe: Path, first: int, last: int, *args: str):
    proc = run_pipeline(recipe, "--stage", str(first), "--stop-stage", str(last),
                        "--ustokenizer-config", "conf/ust.yaml", "--codec-config", "conf/codec.yaml",
                        "--speaker-config", "conf/speaker.yaml", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def runs(path: Path) -> int:
    return len((path / "runs").read_text().splitlines()) if (path / "runs").exists() else 0


def stale(recipe: Path, name: str) -> list[Path]:
    return sorted((recipe / "exp").glob(f"{name}.stale-*"))


@pytest.mark.parametrize("stage,exp,edit", [
    (3, "ust", "data/cuts/x_cuts_train.jsonl.gz"),      # USTokenizer
    (4, "codec", "data/cuts/x_cuts_train.jsonl.gz"),    # codec
    (6, "train", "dump/cuts/x.jsonl.gz"),               # DualSpeechLM
])
def test_changed_inputs_or_force_train_from_scratch(recipe, stage, exp, edit):
    stages(recipe, 3, stage) if stage == 4 else stages(recipe, stage, stage)   # 4 needs 3's tokens
    assert runs(recipe / "exp" / exp) == 1
    again = stages(recipe, stage, stage)
    assert "up to date" in again.stderr and runs(recipe / "exp" / exp) == 1
    (recipe / edit).write_text("edited transcript\n")
    changed = stages(recipe, stage, stage)
    [old] = stale(recipe, exp)
    assert f"exp/{exp} was made from other inputs (or --force): moved to exp/{old.name}" in changed.stderr
    assert runs(recipe / "exp" / exp) == 1 and runs(old) == 1     # started over; old one kept
    forced = stages(recipe, stage, stage, "--force", "true")
    assert len(stale(recipe, exp)) == 2 and "moved to" in forced.stderr
    assert runs(recipe / "exp" / exp) == 1


def test_killed_training_resumes_in_place(recipe):
    stages(recipe, 6, 6)
    (recipe / "exp/stages/stage6_train.done").rename(recipe / "exp/stages/x")   # as if killed:
    hash_ = re.search(r"^hash (\S+)", (recipe / "exp/stages/x").read_text(), re.M).group(1)
    (recipe / "exp/stages/stage6_train.started").write_text(hash_ + "\n")     # same inputs
    (recipe / "exp/log/.stage6_train.log.done").unlink()                       # mid-job
    proc = stages(recipe, 6, 6)
    assert "resuming an unfinished attempt" in proc.stderr and not stale(recipe, "train")
    assert runs(recipe / "exp/train") == 2


def test_damaged_output_is_rebuilt_and_good_ones_kept(recipe):
    stages(recipe, 3, 4)
    train = recipe / "dump/cuts/x_cuts_train.jsonl.gz"
    test = recipe / "dump/cuts/x_cuts_test.jsonl.gz"
    acoustic = recipe / "dump/acoustic/x_cuts_train.jsonl.gz"
    kept = {p: p.stat().st_mtime_ns for p in (test, acoustic)}
    train.unlink()                                        # one output deleted
    proc = stages(recipe, 4, 4)
    assert "outputs changed since it finished" in proc.stderr and "dump/cuts/x_cuts_train" in proc.stderr
    assert "jobs already done" not in proc.stderr and train.exists()
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())   # good outputs untouched
    assert "stage 4 (tokens): up to date" in stages(recipe, 4, 4).stderr


def test_replaced_checkpoint_is_seen_by_content(recipe):
    stages(recipe, 3, 4)
    ckpt = recipe / "exp/codec/codec.pt"
    ckpt.write_text("CODEC")                              # another checkpoint, same size
    proc = stages(recipe, 4, 4)
    assert "stage 4 (codec): inputs unchanged but outputs changed" in proc.stderr
    assert "stage 4 (tokens): running" in proc.stderr     # the tokens follow the codec
    ckpt.touch()                                          # a new time, the same content
    assert "stage 4 (codec): up to date" in stages(recipe, 4, 4).stderr
