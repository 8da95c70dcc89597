"""Workers end with the process that runs them: a SIGKILL of the recipe's process group, or of
only the shell that runs an extraction job, or of a shard writer, leaves no worker running and
nothing more written (a re-run would otherwise race orphans writing the same files)."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lhotse import CutSet, Recording

from dualspeech.data.manifest_io import speech_cut

REPO = Path(__file__).resolve().parents[2]


def extractors(store: Path) -> dict[int, int]:
    """{pid: parent pid} of the live processes extracting into ``store``."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            stat = (d / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z" and cmd[1:3] == [b"-m", b"dualspeech.bin.extract_speaker"] \
                and str(store).encode() in cmd:
            found[int(d.name)] = int(ppid)
    return found


def written(store: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in store.rglob("*") if p.is_file()}


@pytest.mark.parametrize("victim", ["group", "parent"])
def test_killed_recipe_leaves_no_extraction_job(tmp_path, make_speech, victim):
    (tmp_path / "utils").symlink_to(REPO / "utils")
    rec = Recording.from_file(make_speech("the quick brown fox", "u"), recording_id="u")
    cuts = [speech_cut(dataclasses.replace(rec, id=f"u{i:04d}"), "the quick brown fox", "s")
            for i in range(2000)]                       # far more than the seconds we let it run
    CutSet.from_cuts(cuts).to_file(tmp_path / "in.jsonl.gz")
    (tmp_path / "spk.yaml").write_text("speaker:\n  name: resemblyzer\n")
    store = tmp_path / "store"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        ["utils/run_jobs.sh", "JOB=0:1", "log/spk.JOB.log", sys.executable, "-m",
         "dualspeech.bin.extract_speaker", "--conf", "spk.yaml", "--cuts", "in.jsonl.gz",
         "--out-cuts", "out.jsonl.gz", "--storage-dir", str(store), "--nj", "2", "--job", "JOB",
         "--chunk-size", "1", "--device", "cpu"],
        cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)                      # its own group, as a recipe run is
    try:
        deadline = time.time() + 180
        while not all(list(store.glob(f"parts/*.{j}-of-2.*.jsonl.gz")) for j in (0, 1)):
            assert proc.poll() is None, f"run_jobs.sh ended (rc {proc.returncode}) before the kill"
            assert time.time() < deadline, "the extraction jobs wrote nothing in 180 s"
            time.sleep(0.1)
        jobs = extractors(store)
        assert len(jobs) == 2, jobs
        if victim == "group":
            os.killpg(proc.pid, signal.SIGKILL)
        else:                                           # only the shells running the jobs
            for parent in set(jobs.values()):
                os.kill(parent, signal.SIGKILL)
        deadline = time.time() + 10
        while extractors(store) and time.time() < deadline:
            time.sleep(0.1)
        left = extractors(store)
        assert not left, f"extraction jobs still running 10 s after the kill: {sorted(left)}"
        before = written(store)
        time.sleep(1.5)
        assert written(store) == before, "files were written after the kill"
    finally:
        for pid in extractors(store):                   # what the old code left behind
            os.kill(pid, signal.SIGKILL)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


SHARD_PARENT = """
import sys, time
from pathlib import Path
from dualspeech.data.shards import ShardWriter

out = Path(sys.argv[1])

def make_records(task, k):
    (out / f"started.{k}").touch()
    time.sleep(6)
    (out / f"late.{k}").touch()                     # what an orphaned worker would still do
    return []

ShardWriter(out / "shards", {"x": 1}, shard_size=4).write_all([("t", 0), ("t", 1)], make_records, 2)
"""


def test_killed_shard_writer_leaves_no_worker(tmp_path):
    """SIGKILL of the process running ``ShardWriter.write_all(nj=2)`` ends its pool workers."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SHARD_PARENT, str(tmp_path)], env=env,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while not all((tmp_path / f"started.{k}").exists() for k in (0, 1)):
            assert proc.poll() is None and time.time() < deadline, "the workers never started"
            time.sleep(0.05)
        proc.kill()                                     # only the parent
        proc.wait()
        time.sleep(8)                                   # past the workers' sleep
        assert not list(tmp_path.glob("late.*")), "pool workers went on after their parent died"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)         # the old code's orphans share the group
        except ProcessLookupError:
            pass
