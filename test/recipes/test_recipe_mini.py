"""The mini recipe's data stages: a run killed in the middle of a stage continues on re-run
without redoing finished work and without corrupt outputs; unchanged stages are skipped.

The recipe runs for real (espeak-ng, make_mini_corpus, the pipeline) in a scratch copy of
egs/mini whose files link back to the repository, so nothing is written into the checkout.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import soundfile as sf
from lhotse import CutSet
from fake_recipe import link_recipe

REPO = Path(__file__).resolve().parents[2]


def run(recipe: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    if subprocess.run(["which", "espeak-ng"], capture_output=True).returncode:
        pytest.skip("espeak-ng is not installed (tools/install.sh installs it)")
    return link_recipe(tmp_path, "mini")


def finished_wavs(audio: Path) -> list[Path]:
    """Renamed-into-place utterances (a kill can leave the synthesiser's hidden temp file)."""
    return [p for p in audio.glob("*.wav") if not p.name.startswith(".")]


def test_mini_data_stages_resume_after_kill(mini):
    args = ["--size", "tiny", "--stage", "0", "--stop-stage", "2"]
    proc = subprocess.Popen(["./run.sh", *args], cwd=mini, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    audio = mini / "db/mini_tiny/audio/train"
    deadline = time.time() + 120
    while time.time() < deadline and len(finished_wavs(audio)) < 20:
        assert proc.poll() is None, "the recipe finished before it could be interrupted"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)                     # a crash, mid-stage 0
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in finished_wavs(audio)}
    assert len(before) >= 20
    assert not (mini / "exp/tiny/stages/stage0_corpus.done").exists()

    done = run(mini, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stage 2 (check): done" in done.stderr
    for path, mtime in before.items():                       # finished work was not redone
        assert path.stat().st_mtime_ns == mtime, f"{path.name} was regenerated"
    wavs = sorted((mini / "db/mini_tiny/audio").rglob("*.wav"))
    assert len(wavs) > len(before)
    for path in wavs:                                        # nothing half-written
        wave, sr = sf.read(path)
        assert sr == 16000 and len(wave) > 1600, path
    assert not list((mini / "db/mini_tiny").rglob(".*tmp*"))
    cuts = CutSet.from_file(mini / "data/tiny/cuts/mini_cuts_train.jsonl.gz")
    assert len(cuts) == len(finished_wavs(audio))
    summary = (mini / "data/tiny/checked/summary.tsv").read_text().splitlines()[1:]
    assert len(summary) == 3 * 8
    assert all(r.split("\t")[3] == r.split("\t")[4] != "0" for r in summary)   # kept == total

    start = time.time()
    again = run(mini, *args)
    assert again.returncode == 0
    assert again.stderr.count("up to date") == 3 and time.time() - start < 10
    history = (mini / "exp/tiny/command_history.tsv").read_text().splitlines()
    assert len(history) == 3 and "./run.sh --size tiny --stage 0 --stop-stage 2" in history[-1]
    assert (mini / "exp/tiny/run.sh").read_text().rstrip().endswith('--stop-stage 2 "$@"')


def test_mini_bad_options_are_clear_errors(mini):
    proc = run(mini, "--size", "huge")
    assert proc.returncode == 1 and "--size must be tiny, small or default, got 'huge'" in proc.stderr
    proc = run(mini, "--size", "tiny", "--no-such-option", "1")
    assert proc.returncode == 1 and "unknown option '--no-such-option'" in proc.stderr
    help_text = run(mini, "--help").stdout
    assert "--size" in help_text and "--stop-stage" in help_text and "--nj" in help_text


@pytest.mark.slow
def test_mini_sharded_extraction_resumes_after_kill(mini):
    """Killed during stage 3's sharded USToken extraction, the re-run keeps the finished jobs."""
    assert run(mini, "--size", "tiny", "--stop-stage", "2").returncode == 0
    proc = subprocess.Popen(["./run.sh", "--size", "tiny", "--stage", "3", "--stop-stage", "3"],
                            cwd=mini, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    logs = mini / "exp/tiny/log"
    first = [logs / f".stage3_ustokens.mini.train.{j}.log.done" for j in (0, 1)]
    deadline = time.time() + 600
    while time.time() < deadline and not all(m.exists() for m in first):
        assert proc.poll() is None, "stage 3 finished before it could be interrupted"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {p: p.stat().st_mtime_ns for p in first + [logs / "stage3_ustokens.mini.train.0.log"]}
    assert not (mini / "exp/tiny/stages/stage3_ustokens.done").exists()

    done = run(mini, "--size", "tiny", "--stage", "3", "--stop-stage", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stage 3 (ustokenizer): up to date" in done.stderr
    assert "2 of 2 jobs already done" in done.stderr
    for path, mtime in kept.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.name} was redone"
    for part in ("train", "dev", "test"):
        cuts = CutSet.from_file(mini / f"dump/tiny/ustokens/mini_cuts_{part}.jsonl.gz")
        source = CutSet.from_file(mini / f"data/tiny/cuts/mini_cuts_{part}.jsonl.gz")
        assert [c.id for c in cuts] == [c.id for c in source]
        assert all(c.has_custom("ustokens") for c in cuts)


def test_stage0_generator_runs_with_the_given_python(tmp_path):
    """--python reaches stage 0's corpus generator (it used to call plain `python`)."""
    recipe = link_recipe(tmp_path, "mini")
    fake = tmp_path / "fakepy"
    fake.write_text('#!/usr/bin/env bash\necho "$*" >> "$(dirname "$0")/calls.log"\n'
                    'while [ $# -gt 0 ]; do [ "$1" != --out-dir ] || mkdir -p "$2"; shift; done\n')
    fake.chmod(0o755)
    proc = run(recipe, "--size", "tiny", "--stage", "0", "--stop-stage", "0", "--python", str(fake))
    assert proc.returncode == 0, proc.stderr[-3000:]
    calls = (tmp_path / "calls.log").read_text() if (tmp_path / "calls.log").exists() else ""
    assert "-m dualspeech.bin.make_mini_corpus --size tiny --seed 0 --out-dir db/mini_tiny" in calls
