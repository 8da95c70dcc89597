"""Training data at scale: stage-5 shards written and streamed at two corpus sizes.

Task examples are synthesised in the real training format: lhotse cuts with a recording,
a supervision and the task fields (links, texts), USToken ids at 25/s and codec ids at 40/s for
utterances of 2-20 s, a 256-d speaker embedding; no audio. Tasks are drawn by the paper's
weights (``--nj`` processes write, like stage 5's ``--nj``). Each size runs in fresh processes:
one writes the shards (rendering with the debug config's tokenizer and templates, exactly as
``write_shards`` does), one is the training process: it opens the shards (start-up:
``ShardDataset`` + sampler + DataLoader until the first batch), then one DataLoader worker
streams batches. Printed per size: write seconds, start-up seconds, examples/s of the one
worker, peak RSS of the training process and of the worker (MB), the files the worker holds
open. Last line: ``memory_growth=<peak RSS large / small>``.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from dualspeech.bench import register

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "egs/mini/conf/dualspeechlm_debug.yaml"
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when if "
         "so no will more out up said what its about into than them can only other time new some "
         "could these two may first then do any like my now over such our man me even most made "
         "after also did many before must through back years where much your way well down").split()
MAX_LEN = 4096           # paper-scale limits: nothing synthesised here is filtered out


def task_counts(n: int) -> dict[str, int]:
    """Examples per task: ``n`` split by the paper's task weights."""
    from dualspeech.data.sampler import PAPER_TASK_WEIGHTS

    total = sum(PAPER_TASK_WEIGHTS.values())
    counts = {t: round(n * w / total) for t, w in PAPER_TASK_WEIGHTS.items()}
    counts["asr"] += n - sum(counts.values())
    return counts


def synth_examples(task: str, first: int, n: int, seed: int, num_tokens: int, n_codes: int):
    """(cut, inputs, target, codes, speaker) of examples ``first..first+n-1`` of ``task``."""
    from lhotse import MonoCut, Recording, SupervisionSegment
    from lhotse.audio import AudioSource

    from dualspeech.data.tasks import TASKS

    spec = TASKS[task]
    rng = np.random.default_rng([seed, list(TASKS).index(task), first])
    durs = rng.uniform(2.0, 20.0, (n, 2))
    words = rng.choice(WORDS, (n, 60))
    text = lambda i, s: " ".join(words[i, :max(1, int(s * 2.5))])  # noqa: E731
    ids = lambda s: rng.integers(0, num_tokens, int(s * 25))       # noqa: E731
    for i in range(n):
        dur, other = float(durs[i, 0]), float(durs[i, 1])
        cid = f"{task}-{first + i:08d}"
        rec = Recording(id=cid, sources=[AudioSource("file", [0], f"corpus/{cid}.flac")],
                        sampling_rate=16000, num_samples=int(dur * 16000), duration=dur)
        sup = SupervisionSegment(id=cid, recording_id=cid, start=0.0, duration=dur, channel=0,
                                 text=text(i, dur), speaker=f"spk{i % 997}", language="en")
        fields = {"task": task, "text": sup.text, "question": text(i, 2), "answer": text(i, 1),
                  "source_text": sup.text, "target_text": text(i, other), "source_lang": "en",
                  "target_lang": "de", "emotion": "happy"}
        fields = {k: v for k, v in fields.items() if k == "task" or k in spec.required_fields}
        if spec.required_links:
            fields["links"] = {r: f"{cid}-{r}" for r in spec.required_links}
        cut = MonoCut(id=cid, start=0.0, duration=dur, channel=0, recording=rec,
                      supervisions=[sup], custom=fields)
        inputs = {r: ids(dur if r == "primary" else other) for r in spec.input_speech}
        target = codes = speaker = None
        if spec.output_speech:
            out_dur = dur if spec.output_speech == "primary" else other
            target, codes = ids(out_dur), rng.integers(0, n_codes, int(out_dur * 40))
            speaker = rng.standard_normal(256).astype(np.float32)
        yield cut, inputs, target, codes, speaker


def _write(n: int, root: str, seed: int, shard_size: int, nj: int, out) -> None:
    from dualspeech.config import load_config
    from dualspeech.data.encoding import render_record
    from dualspeech.data.shards import ShardWriter, encoding_fingerprint, set_dir
    from dualspeech.data.streaming import shard_root
    from dualspeech.models.dualspeechlm import build_templates

    templates, _ = build_templates(load_config(CONF))
    tic, cpu = time.perf_counter(), _cpu_self_and_children()
    fp = encoding_fingerprint(templates)
    writer = ShardWriter(set_dir(shard_root(root), "synth", "train"), {"encoding": fp},
                         shard_size)
    counts = task_counts(n)
    num_tokens = templates.vocab.cfg.num_tokens

    def make_records(task: str, k: int) -> list[dict]:
        first = k * shard_size
        return [render_record(templates, task, *ex) for ex in synth_examples(
            task, first, min(shard_size, counts[task] - first), seed, num_tokens, 1024)]

    units = [(t, k) for t, c in counts.items() for k in range(-(-c // shard_size))]
    writer.write_all(units, make_records, nj)
    writer.finish(counts, fp, {})
    out.put({"write_s": time.perf_counter() - tic, "write_cpu_s": _cpu_self_and_children() - cpu})


def _cpu_self_and_children() -> float:
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                   resource.getrusage(resource.RUSAGE_CHILDREN)))


def _proc_cpu(pid: int) -> float:
    """CPU seconds process ``pid`` used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def replicate(root: Path, times: int) -> int:
    """Serve the written set ``times`` over: every shard hard-linked under ``times`` shard
    numbers and one index over all of them (start-up, memory and reading at ``times`` the size
    without ``times`` the writing). Returns the examples of the replicated set."""
    import json

    from dualspeech.data.shards import ShardSet, ShardWriter, set_dir, shard_files
    from dualspeech.data.streaming import shard_root

    path = set_dir(shard_root(root), "synth", "train")
    src = ShardSet(path)
    stamp = json.loads((path / "writing.json").read_text())
    writer = ShardWriter(path, {k: v for k, v in stamp.items() if k not in ("format", "shard_size")},
                         src.shard_size)
    counts = {}
    for task in src.tasks:
        n_shards = len(src.index["tasks"][task]["shards"])
        n = src.index["tasks"][task]["num_examples"]
        if n % src.shard_size:
            raise ValueError(f"--replicate needs full shards: {task} has {n} examples")
        for r in range(1, times):
            for k in range(n_shards):
                done = writer.done(task, k)
                new = r * n_shards + k
                for (_, a), (_, b) in zip(shard_files(task, k).items(), shard_files(task, new).items()):
                    (path / b).unlink(missing_ok=True)
                    os.link(path / a, path / b)
                done["sizes"] = {shard_files(task, new)[f]: done["sizes"][name]
                                 for f, name in shard_files(task, k).items()}
                (path / task / f"done.{new:06d}.json").write_text(json.dumps(done))
        counts[task] = n * times
    writer.finish(counts, src.index["encoding"], {})
    return sum(counts.values())


def _worker_stats(pid: int) -> tuple[float, int]:
    """(peak RSS MB, regular files open) of process ``pid``."""
    with open(f"/proc/{pid}/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    files = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        files += target.startswith("/") and not target.startswith("/dev/")
    return hwm / 1024, files


def _train(root: str, seconds: float, out) -> None:
    import torch

    from dualspeech.config import load_config
    from dualspeech.data.sampler import SamplerConfig, TaskBatchSampler
    from dualspeech.data.streaming import ShardDataset
    from dualspeech.data.token_layout import AcousticSpec
    from dualspeech.models.dualspeechlm import build_templates

    templates, _ = build_templates(load_config(CONF))
    tic, cpu = time.perf_counter(), time.process_time()
    ds = ShardDataset(root, ["synth:train"], templates, MAX_LEN,
                      AcousticSpec("acoustic_tokens", 1024, 256, MAX_LEN, MAX_LEN))
    sampler = TaskBatchSampler(ds.lengths, SamplerConfig(max_tokens=16384, max_batch_size=256),
                               rank=0, world_size=1, groups=ds.groups)
    loader = torch.utils.data.DataLoader(ds, sampler=sampler, batch_size=None, num_workers=1,
                                         prefetch_factor=4, persistent_workers=True)
    it = iter(loader)
    next(it)
    pid = it._workers[0].pid         # the DataLoader's worker (kept across epochs)
    startup = time.perf_counter() - tic
    startup_cpu = time.process_time() - cpu + _proc_cpu(pid)
    n, tic, peak_w, files, worker_cpu = 0, time.perf_counter(), 0.0, 0, _proc_cpu(pid)
    while time.perf_counter() - tic < seconds:
        batch = next(it, None)
        if batch is None:               # next epoch, same worker
            sampler.set_epoch(sampler.epoch + 1)
            it = iter(loader)
            continue
        n += len(batch["tasks"])
        rss, f = _worker_stats(pid)
        peak_w, files = max(peak_w, rss), max(files, f)
    rate = n / (time.perf_counter() - tic)
    rate_cpu = n / max(_proc_cpu(pid) - worker_cpu, 1e-3)
    del it, loader
    out.put({"startup_s": startup, "startup_cpu_s": startup_cpu, "examples_per_s": rate,
             "examples_per_cpu_s": rate_cpu, "examples": len(ds),
             "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
             "worker_rss_mb": peak_w, "worker_files": files})


def _run(target, *args) -> dict:
    ctx = mp.get_context("spawn")      # fresh process: peak RSS of this step alone
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    while True:
        try:
            result = q.get(timeout=5)
            break
        except Exception:               # queue.Empty: still running, or died
            if not p.is_alive():
                raise RuntimeError(f"{target.__name__} failed (exit {p.exitcode})") from None
    p.join()
    return result


@register("data_scale", "training shards: write s, start-up s, examples/s, RSS, open files vs size")
def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="bench data_scale", description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    p.add_argument("--read-seconds", type=float, default=8.0, help="worker streaming time per size")
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--nj", type=int, default=2, help="processes writing shards")
    p.add_argument("--workdir", default=None, help="where the shards go (default: a temp dir)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replicate", type=int, default=1,
                   help="measure the largest size served this many times over (hard links; for a "
                        "size too large to write on this machine; write s is of the written part)")
    args = p.parse_args(argv)
    base = Path(args.workdir or tempfile.mkdtemp(prefix="data_scale."))
    rows = []
    for n in args.sizes:
        root = base / f"n{n}"
        shutil.rmtree(root, ignore_errors=True)
        row = {"size": n, **_run(_write, n, str(root), args.seed, args.shard_size, args.nj)}
        if args.replicate > 1 and n == args.sizes[-1]:
            row["size"] = replicate(root, args.replicate)
        row.update(_run(_train, str(root), args.read_seconds))
        row["disk_mb"] = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2 ** 20
        rows.append(row)
        print(f"size {n}: written in {row['write_s']:.1f} s ({row['disk_mb']:.0f} MB)", flush=True)
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    print("(wall-clock seconds; in brackets CPU seconds, which a machine shared with other "
          "jobs does not inflate)")
    print(f"{'examples':>9s} {'write s':>14s} {'start-up s':>13s} {'ex/s/worker':>15s} "
          f"{'RSS MB':>7s} {'worker MB':>9s} {'open files':>10s} {'disk MB':>8s}")
    for r in rows:
        print(f"{r['size']:9d} {r['write_s']:6.1f} ({r['write_cpu_s']:5.1f}) "
              f"{r['startup_s']:5.2f} ({r['startup_cpu_s']:5.2f}) "
              f"{r['examples_per_s']:6.0f} ({r['examples_per_cpu_s']:6.0f}) {r['rss_mb']:7.0f} "
              f"{r['worker_rss_mb']:9.0f} {r['worker_files']:10d} {r['disk_mb']:8.0f}")
    small, large = rows[0], rows[-1]
    print(f"start-up growth: {large['startup_s'] / small['startup_s']:.2f}x wall-clock, "
          f"{large['startup_cpu_s'] / small['startup_cpu_s']:.2f}x CPU for "
          f"{large['size'] / small['size']:.0f}x the examples")
    print(f"memory_growth={large['rss_mb'] / small['rss_mb']:.2f}")
