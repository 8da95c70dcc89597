"""Stages 7-8 with --controls true: the four control decodes run (the untrained one on the
unmerged model), stage 8 scores them beside the model's and puts samples.html next to
RESULTS.md; --controls false runs none. The real pipeline runs with a fake --python that
records each call and makes the outputs the stages check."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fake_recipe import make_fake_recipe, run_pipeline

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/calls.log"
while [ $# -gt 0 ]; do
  case $1 in
    --exp-dir) mkdir -p "$2/model" ;;
    --out) mkdir -p "$2" ;;
    --out-dir) mkdir -p "$2"; echo "# results" > "$2/RESULTS.md" ;;
    --samples-html) mkdir -p "$(dirname "$2")/samples"; echo "<html></html>" > "$2" ;;
  esac
  shift
done
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    return make_fake_recipe(tmp_path, FAKE_PYTHON)


def pipeline(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    return run_pipeline(recipe, "--score-config", "conf/score.yaml", "--results-md",
                        "results/RESULTS.md", "--merge-lora", "true", *args)


def calls(recipe: Path, module: str) -> list[str]:
    log = recipe / "fakepy"
    lines = (log.parent / "calls.log").read_text().splitlines()
    return [x for x in lines if f"-m dualspeech.bin.{module} " in x]


def test_controls_decoded_and_scored(recipe):
    proc = pipeline(recipe, "--stage", "6", "--stop-stage", "8", "--controls", "true")
    assert proc.returncode == 0, proc.stderr
    decodes = calls(recipe, "decode")
    assert len(decodes) == 5
    ctl = {c: next(x for x in decodes if f"+decode.control={c}" in x)
           for c in ("shuffled_speech", "untrained", "resynth", "ground_truth")}
    for c, line in ctl.items():
        assert f"--out-dir exp/train/controls_decode/{c} " in line
        model = "exp/train/model " if c == "untrained" else "exp/train/merged "
        assert f"--model {model}" in line          # untrained: never the merged LLM
    (score,) = calls(recipe, "score")
    assert "--control-dir exp/train/controls_decode" in score
    assert "--samples-html exp/train/score_decode/samples.html" in score
    assert (recipe / "results/RESULTS.md").is_file() and (recipe / "results/samples.html").is_file()
    assert (recipe / "results/samples").is_dir()
    again = pipeline(recipe, "--stage", "7", "--stop-stage", "8", "--controls", "true")
    assert again.returncode == 0 and "stage 7 (controls): up to date" in again.stderr + again.stdout


def test_no_controls_by_default(recipe):
    proc = pipeline(recipe, "--stage", "6", "--stop-stage", "8")
    assert proc.returncode == 0, proc.stderr
    assert len(calls(recipe, "decode")) == 1
    (score,) = calls(recipe, "score")
    assert "--control-dir" not in score and "--samples-html" in score
