"""Benchmark: the HTTP server under load, 1 / 8 / 32 concurrent clients (dynamic batching).

``bin/serve`` runs as a subprocess on a free loopback port; for each client count, that many
threads (one keep-alive connection each) send mixed ASR and TTS requests (half each, JSON with
base64 audio) back to back for ``--seconds``. Per level: requests/s, p50 / p95 latency, errors
(any answer but 200; must be 0) and the mean batch the worker decoded (from ``/health``). Last
line: ``batching_throughput_gain=<requests/s at the most clients / at 1 client>``.

Model: ``--model DIR``; default the demo's exported model (``egs/mini/exp/default/
dualspeechlm_mini/model``) if it is there, else a random model dir of ``--conf`` it builds
(dualspeech.testing.toy: untrained, so every answer runs to the decode length limits below).
The first line says which. Loopback only; the run is bounded by levels x (--warmup-s +
--seconds) plus the server's start.
"""
from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from dualspeech.bench import register

DEMO_MODEL = Path("egs/mini/exp/default/dualspeechlm_mini/model")


def speech_clip(text: str, pitch: int) -> tuple[bytes, str]:
    """A wav of ``text`` from espeak-ng if installed, else a synthetic voiced tone."""
    import soundfile as sf

    if shutil.which("espeak-ng"):
        out = subprocess.run(["espeak-ng", "-p", str(pitch), "--stdout", text], check=True,
                             capture_output=True).stdout
        return out, "espeak-ng speech"
    t = np.arange(int(1.5 * 16000)) / 16000
    f0 = pitch + 100 + 30 * np.sin(2 * np.pi * 2 * t)
    wave = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / 16000)
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue(), "synthetic tones (espeak-ng not installed)"


def load_level(port: int, clients: int, seconds: float, jobs: list) -> dict:
    """``clients`` threads sending ``jobs`` round robin for ``seconds``: latencies, errors."""
    from dualspeech.inference.client import Client

    lat, errors, lock = [], [], threading.Lock()
    start = threading.Barrier(clients + 1)
    box = {}

    def work(i: int) -> None:
        client, n = Client(port), i
        start.wait()
        while time.perf_counter() < box["end"]:
            t0 = time.perf_counter()
            try:
                status, rec = client.post(*jobs[n % len(jobs)])
            except Exception as e:  # noqa: BLE001 -- counted and shown, the run goes on
                status, rec = 0, {"error": f"{type(e).__name__}: {e}"}
            with lock:
                (lat if status == 200 else errors).append(
                    time.perf_counter() - t0 if status == 200 else (status, rec.get("error")))
            n += 1
        client.close()
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    box["end"] = t0 + seconds
    start.wait()
    for t in threads:
        t.join(seconds + 600)
    return {"elapsed": time.perf_counter() - t0, "lat": lat, "errors": errors}


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model / --conf of the benches that load a model dir (serve, stream)."""
    p.add_argument("--model", type=Path, help=f"model dir (default: {DEMO_MODEL} if present, "
                                              "else a random one built from --conf)")
    p.add_argument("--conf", default="egs/mini/conf/dualspeechlm_debug.yaml",
                   help="model config of the random model dir")


def chosen_model(args) -> Path | None:
    """--model, else the demo's model when it exists, else None (the bench builds a random one)."""
    return args.model or (DEMO_MODEL if (DEMO_MODEL / "model.json").is_file() else None)


@register("serve", "HTTP server throughput / latency at 1, 8, 32 concurrent clients (batching)")
def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.bench serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--seconds", type=float, default=20.0, help="timed load per client count")
    p.add_argument("--warmup-s", type=float, default=3.0, help="untimed load before each level")
    p.add_argument("--max-batch", type=int, default=32,
                   help="server --max-batch (32: the most clients fit one batch)")
    p.add_argument("--max-wait-ms", type=float, default=20.0, help="server --max-wait-ms")
    p.add_argument("--threads", type=int, default=1, help="server torch threads")
    p.add_argument("--text-tokens", type=int, default=24, help="random model: max text tokens")
    p.add_argument("--speech-tokens", type=int, default=40, help="random model: max USTokens")
    p.add_argument("--acoustic-frames", type=int, default=80, help="random model: max frames")
    args = p.parse_args(argv)

    from dualspeech.inference.client import Client, ServerProcess

    with tempfile.TemporaryDirectory() as tmp:
        model = chosen_model(args)
        if model is not None:
            print(f"model: {model}")
        else:
            from dualspeech.testing.toy import toy_model_dir

            decode = {"batch_size": args.max_batch,
                      "text": {"strategy": "greedy", "max_new_tokens": args.text_tokens},
                      "speech": {"max_new_tokens": args.speech_tokens, "do_sample": False},
                      "acoustic": {"max_len": args.acoustic_frames, "top_k": 1}}
            model = toy_model_dir(Path(tmp), args.conf, decode=decode)
            print(f"model: random model dir of {args.conf} ({DEMO_MODEL} not found), "
                  f"ASR <= {args.text_tokens} tokens, TTS <= {args.speech_tokens} USTokens / "
                  f"{args.acoustic_frames} frames, greedy")
        (speech, source), (voice, _) = speech_clip("the cat sat on the mat", 50), \
            speech_clip("another voice speaks here", 80)
        jobs = [("asr", {}, {"audio": speech}), ("tts", {"text": "a red dog sat"}, {"prompt": voice})]
        queue = max(64, 2 * max(args.clients))
        server_args = ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
                       "--queue-size", str(queue), "--threads", str(args.threads),
                       "--timeout-s", "600", "--log-level", "warning"]
        print(f"inputs: {source}; mixed ASR / TTS; server: max batch {args.max_batch}, wait "
              f"{args.max_wait_ms:g} ms, {args.threads} torch thread(s); loopback only")
        log = Path(tmp) / "serve.log"
        rows = []
        with ServerProcess(model, server_args, log=log) as server:
            health = Client(server.port)
            for clients in args.clients:
                load_level(server.port, clients, args.warmup_s, jobs)
                before = health.get_json("/health")["batcher"]
                res = load_level(server.port, clients, args.seconds, jobs)
                after = health.get_json("/health")["batcher"]
                batches = after["batches"] - before["batches"]
                lat = np.array(res["lat"]) * 1000
                rows.append({"clients": clients, "n": len(lat), "rps": len(lat) / res["elapsed"],
                             "p50": np.percentile(lat, 50) if len(lat) else float("nan"),
                             "p95": np.percentile(lat, 95) if len(lat) else float("nan"),
                             "errors": res["errors"],
                             "batch": (after["decoded"] - before["decoded"]) / max(batches, 1)})
        print(f"\n{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'errors':>6} {'mean batch':>10}")
        for r in rows:
            print(f"{r['clients']:>7} {r['n']:>8} {r['rps']:>7.2f} {r['p50']:>8.0f} "
                  f"{r['p95']:>8.0f} {len(r['errors']):>6} {r['batch']:>10.1f}")
        bad = [e for r in rows for e in r["errors"]]
        for status, reason in bad[:5]:
            print(f"error {status}: {reason}")
        if bad:
            print(f"{len(bad)} valid requests failed: there must be none")
        first, last = rows[0], rows[-1]
        print(f"batching_throughput_gain={last['rps'] / first['rps']:.2f}")
        if bad:
            raise SystemExit(1)
