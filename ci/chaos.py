"""Fault injection for the tiny mini recipe: SIGKILL its process group at seeded random moments
over stages 0-8, re-run, and compare what it wrote with an uninterrupted run (ci/chaos.sh).

Why stage by stage: the reference run stops after each stage and keeps a snapshot of every
output tree. A kill inside stage S restores the snapshot taken before S, starts the stage in its
own session, kills the whole group at the drawn moment, checks that no process of that run is
left, re-runs the stage to the end and compares the trees with the snapshot taken after S. Later
stages read nothing but those trees, so equal trees after S mean equal outputs downstream; a stray
partial file, a moved-aside experiment or a changed checkpoint all show up as a difference.
Each stage is also re-run once uninterrupted from its snapshot (the control): it shows that the
comparison holds for a run that was not killed, so a kill's difference is the kill's doing.
Standard library only: it drives the recipe, it does not import it."""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "egs" / "mini"
TREES = ("db/mini_tiny", "data/tiny", "dump/tiny", "exp/tiny")   # everything the tiny run writes
STAGES = range(9)
TAG = "DS_CHAOS_RUN"                  # environment marker: every process of one run inherits it
# Bookkeeping, not outputs: logs, the command history, tensorboard events (named by time and pid)
# and the stage markers (their hashes cover input mtimes, which a re-run changes); the markers'
# presence is compared instead.
VOLATILE = re.compile(r"(^|/)log/|\.log$|(^|/)command_history\.tsv$|^exp/tiny/run\.sh$"
                      r"|^exp/tiny/stages/|(^|/)tensorboard/")
# Numbers that measure the machine, not the result: wall times and real-time factors.
TIMING_KEY = re.compile(r"(^|_)(time|seconds|elapsed|wall|rtf|throughput)(_|$)|_s$|^secs?$")


def stage_cmd(stage: int) -> list[str]:
    return ["./run.sh", "--size", "tiny", "--stage", str(stage), "--stop-stage", str(stage)]


def _strip_timing(obj):
    """Drop wall-time fields, and recorded sha256s: each names a file of the trees, which is
    compared itself (by content: a .gz's hash changes with gzip's header time)."""
    if isinstance(obj, dict):
        return {k: _strip_timing(v) for k, v in obj.items()
                if not TIMING_KEY.search(str(k)) and k != "sha256"}
    if isinstance(obj, list):
        return [_strip_timing(v) for v in obj]
    return obj


def _ogg_without_serial(data: bytes) -> bytes:
    """An Ogg file with each page's stream serial number and checksum zeroed: the encoder draws
    the serial at random, the audio pages are otherwise the same bytes for the same samples."""
    out, pos = bytearray(data), 0
    while pos + 27 <= len(out) and out[pos:pos + 4] == b"OggS":
        nseg = out[pos + 26]
        body = sum(out[pos + 27:pos + 27 + nseg])
        out[pos + 14:pos + 18] = bytes(4)        # bitstream serial number
        out[pos + 22:pos + 26] = bytes(4)        # CRC over the page (covers the serial)
        pos += 27 + nseg + body
    return bytes(out)


def file_digest(path: Path) -> str:
    """Content hash (of the decompressed content for .gz, without the random serial for .ogg);
    for JSON / JSONL the same with wall-time fields dropped, for RESULTS.md the
    table rows only (its header names the machine's times)."""
    data = path.read_bytes()
    name = path.name
    if name.endswith(".gz"):                      # gzip's header holds the write time
        data, name = gzip.decompress(data), name[:-3]
    if name.endswith(".json") or name.endswith(".jsonl"):
        try:
            if name.endswith(".jsonl"):
                rows = [_strip_timing(json.loads(ln)) for ln in data.splitlines() if ln.strip()]
            else:
                rows = _strip_timing(json.loads(data))
            data = json.dumps(rows, sort_keys=True).encode()
        except ValueError:
            pass                                  # not JSON after all: compare its bytes
    elif name.endswith(".ogg"):
        data = _ogg_without_serial(data)
    elif name == "RESULTS.md":
        data = b"\n".join(ln for ln in data.splitlines() if ln.startswith(b"|"))
    return hashlib.sha256(data).hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: digest} of every output file under the recipe's tiny trees; stage markers
    count by name only."""
    out = {}
    for tree in TREES:
        base = root / tree
        if not base.exists():
            continue
        for p in sorted(base.rglob("*")):
            if p.is_dir():
                continue
            rel = p.relative_to(root).as_posix()
            if rel.startswith("exp/tiny/stages/"):
                if rel.endswith(".done"):
                    out[rel] = "marker"
                continue
            if VOLATILE.search(rel):
                continue
            out[rel] = "dangling-link" if p.is_symlink() and not p.exists() else file_digest(p)
    return out


def diff(a: dict[str, str], b: dict[str, str], limit: int = 8) -> list[str]:
    lines = [f"only in the uninterrupted run: {k}" for k in sorted(a.keys() - b.keys())]
    lines += [f"only after the kill: {k}" for k in sorted(b.keys() - a.keys())]
    lines += [f"differs: {k}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
    return lines[:limit] + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])


def snapshot(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for tree in TREES:
        if (RECIPE / tree).exists():
            (dest / tree).parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(RECIPE / tree, dest / tree, symlinks=True)


def restore(src: Path | None) -> None:
    for tree in TREES:
        shutil.rmtree(RECIPE / tree, ignore_errors=True)
        if src is not None and (src / tree).exists():
            shutil.copytree(src / tree, RECIPE / tree, symlinks=True)


def run_env(tag: str) -> dict[str, str]:
    return {**os.environ, TAG: tag}


def processes_of(tag: str) -> list[int]:
    """Live processes carrying this run's marker (a worker that escaped the process group too)."""
    needle = f"{TAG}={tag}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                pids.append(int(d.name))
        except OSError:
            continue                              # gone, or not ours to read
    return pids


def run_stage(stage: int, log: Path, tag: str) -> tuple[int, float]:
    start = time.monotonic()
    with open(log, "ab") as fh:
        rc = subprocess.run(stage_cmd(stage), cwd=RECIPE, stdout=fh, stderr=subprocess.STDOUT,
                            env=run_env(tag), start_new_session=True).returncode
    return rc, time.monotonic() - start


def kill_during(stage: int, at: float, log: Path, tag: str) -> tuple[bool, list[int]]:
    """Start the stage in its own session, SIGKILL the group `at` s later. Returns (the kill
    landed before the stage ended, pids of the run still alive 2 s after the kill)."""
    with open(log, "ab") as fh:
        proc = subprocess.Popen(stage_cmd(stage), cwd=RECIPE, stdout=fh, stderr=subprocess.STDOUT,
                                env=run_env(tag), start_new_session=True)
        try:
            proc.wait(timeout=at)
            return False, []                      # it finished first: the kill missed
        except subprocess.TimeoutExpired:
            pass
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(2.0)
    left = processes_of(tag)
    for pid in left:                              # leave the machine clean for the re-run
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True, left


def schedule(n: int, seed: int, durations: dict[int, float]) -> list[tuple[int, float]]:
    """n (stage, moment) pairs: the stages cycle in a fresh seeded order so every stage gets
    n // 9 or more kills; the moment is uniform over 5-90 % of the stage's reference time."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        order = list(STAGES)
        rng.shuffle(order)
        for s in order[: n - len(out)]:
            out.append((s, rng.uniform(0.05, 0.9) * durations[s]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--kills", type=int, default=20, help="number of SIGKILLs (N)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the stages and moments")
    ap.add_argument("--work-dir", type=Path, default=Path("chaos_work"),
                    help="snapshots and logs (relative to egs/mini); removed at the start")
    args = ap.parse_args(argv)
    work = args.work_dir if args.work_dir.is_absolute() else RECIPE / args.work_dir
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    snaps = work / "snapshots"
    t0 = time.monotonic()

    # the uninterrupted reference, one stage at a time, a snapshot after each
    restore(None)
    durations, reference = {}, {}
    for s in STAGES:
        rc, durations[s] = run_stage(s, work / "logs" / f"reference_stage{s}.log", f"ref{s}")
        if rc != 0:
            print(f"[chaos] the uninterrupted stage {s} failed (rc {rc}): see "
                  f"{work / 'logs' / f'reference_stage{s}.log'}", file=sys.stderr)
            return 1
        snapshot(snaps / f"after{s}")
        reference[s] = tree_digest(RECIPE)
        print(f"[chaos] reference stage {s}: {durations[s]:.1f} s, {len(reference[s])} files", flush=True)

    def before(s: int) -> Path | None:
        return snaps / f"after{s - 1}" if s > 0 else None

    controls_ok = 0
    for s in STAGES:                              # the comparison holds without a kill
        restore(before(s))
        rc, _ = run_stage(s, work / "logs" / f"control_stage{s}.log", f"ctl{s}")
        d = diff(reference[s], tree_digest(RECIPE)) if rc == 0 else [f"exit code {rc}"]
        controls_ok += not d
        print(f"[chaos] control stage {s}: {'identical' if not d else 'DIFFERENT'}", flush=True)
        for line in d:
            print(f"[chaos]   {line}")

    identical = orphaned = 0
    plan = schedule(args.kills, args.seed, durations)
    for i, (s, at) in enumerate(plan):
        log = work / "logs" / f"kill{i:02d}_stage{s}.log"
        landed = False
        for _ in range(4):                        # a stage that ran faster this time: kill earlier
            restore(before(s))
            landed, left = kill_during(s, at, log, f"kill{i}")
            if landed:
                break
            at /= 2
        if not landed:
            print(f"[chaos] kill {i}: stage {s} always finished within {at:.2f} s; not counted",
                  file=sys.stderr)
            return 1
        orphaned += bool(left)
        rc, _ = run_stage(s, log, f"rerun{i}")
        d = [f"the re-run exited with {rc}"] if rc else diff(reference[s], tree_digest(RECIPE))
        if left:
            d.insert(0, f"{len(left)} process(es) of the killed run were still alive: {left}")
        identical += not d
        print(f"[chaos] kill {i}: stage {s} at {at:.1f} s -> {'identical' if not d else 'DIFFERENT'}"
              f" (log {log.relative_to(RECIPE)})", flush=True)
        for line in d:
            print(f"[chaos]   {line}")

    restore(snaps / f"after{STAGES[-1]}")      # leave the finished run in place
    print(f"[chaos] controls identical: {controls_ok}/{len(STAGES)}; runs with orphans: {orphaned}; "
          f"{time.monotonic() - t0:.0f} s in all")
    print(f"kills={len(plan)} identical={identical}")
    print(f"chaos_identical_fraction={identical / len(plan):.3f}")
    return 0 if identical == len(plan) and controls_ok == len(STAGES) else 1


if __name__ == "__main__":
    sys.exit(main())
