"""Scoring's ASR engines side by side: openai-whisper vs CTranslate2 on the same utterances.

Both transcribers are built from the scorer config (``--conf``: a YAML with a ``score``
section; model, batch size and length caps come from there, so the bench measures what stage 8
runs) and read the same mini-corpus test speech, made first when the corpus is absent. Prints
each engine's load and transcription wall time, its WER against the references, how many
transcripts the engines agree on, the machine's load average (the cores may be shared), and
last ``ct2_speedup=<openai-whisper time / CTranslate2 time>``.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from dualspeech.bench import register


def _mini_test_speech(data_dir: Path, size: str, part: str, limit: int) -> tuple[list, list[str]]:
    """(16 kHz waves, reference texts) of the first ``limit`` cuts of the corpus part."""
    from lhotse import CutSet

    from dualspeech.tokenizers.extraction import cut_waves

    cuts_path = data_dir / "cuts" / f"mini_cuts_{part}.jsonl.gz"
    if not cuts_path.is_file():
        from dualspeech.data.mini import make_mini_corpus

        print(f"{cuts_path} not found: making the mini corpus (--size {size}) in {data_dir}")
        t0 = time.perf_counter()
        make_mini_corpus(data_dir, size=size)
        print(f"mini corpus made in {time.perf_counter() - t0:.0f} s (not part of the measurement)")
    cuts = [c for c in CutSet.from_file(cuts_path) if c.supervisions and c.supervisions[0].text]
    skipped: dict[str, str] = {}
    pairs = cut_waves(cuts[:limit], 16000, 1, skipped)
    if skipped:
        print(f"skipped {len(skipped)} unreadable cuts: {sorted(skipped)[:5]}")
    if not pairs:
        raise SystemExit(f"{cuts_path}: no readable utterance with a text")
    return [w for _, w in pairs], [c.supervisions[0].text for c, _ in pairs]


@register("scoring", "stage-8 ASR: openai-whisper vs CTranslate2 wall time and WER, same utterances")
def run(argv: list[str]) -> None:
    import torch

    from dualspeech.config import build, load_config
    from dualspeech.metrics.scoring import ScoreConfig
    from dualspeech.metrics.text import edit_counts
    from dualspeech.metrics.transcribe import build_transcriber

    p = argparse.ArgumentParser(prog="bench scoring", description=__doc__)
    p.add_argument("--conf", default="egs/mini/conf/score_mini.yaml",
                   help="scorer YAML whose score section gives the model, batch size and caps")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set score.asr_model=whisper:tiny.en")
    p.add_argument("--data-dir", default="egs/mini/db/mini_default",
                   help="mini corpus root (made with make_mini_corpus --size SIZE when absent)")
    p.add_argument("--size", default="default", help="corpus size to make when it is absent")
    p.add_argument("--part", default="test")
    p.add_argument("--num-utts", type=int, default=40, help="utterances transcribed (first N cuts)")
    p.add_argument("--threads", type=int, default=2, help="torch and CTranslate2 threads")
    args = p.parse_args(argv)
    cfg = build(ScoreConfig, load_config(args.conf, args.overrides).get("score"), "score")
    torch.set_num_threads(args.threads)
    waves, refs = _mini_test_speech(Path(args.data_dir), args.size, args.part, args.num_utts)
    audio_s = sum(len(w) for w in waves) / 16000
    load_before = os.getloadavg()[0]
    rows, texts = {}, {}
    for engine in ("openai", "ct2"):
        t0 = time.perf_counter()
        asr = build_transcriber(cfg.asr_model, engine, cfg.device, cfg.asr_batch_size,
                                max_tokens=cfg.asr_max_tokens,
                                max_tokens_per_s=cfg.asr_max_tokens_per_s,
                                compute_type=cfg.asr_compute_type)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        texts[engine] = asr.transcribe_waves(waves)
        rows[engine] = (f"{engine} {asr.precision}", load_s, time.perf_counter() - t0,
                        edit_counts(refs, texts[engine], normalizer=cfg.normalizer).rate)
        del asr
    same = sum(a == b for a, b in zip(texts["openai"], texts["ct2"]))
    print(f"{cfg.asr_model} on {len(waves)} {args.part} utterances ({audio_s:.0f} s of audio), "
          f"batch {cfg.asr_batch_size}, max_tokens_per_s {cfg.asr_max_tokens_per_s}, "
          f"{args.threads} threads; load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after (over {args.threads}: the cores were shared)")
    print(f"{'engine':<16}{'load s':>8}{'transcribe s':>14}{'WER %':>8}")
    for name, load_s, run_s, wer in rows.values():
        print(f"{name:<16}{load_s:>8.1f}{run_s:>14.1f}{wer:>8.2f}")
    print(f"identical transcripts: {same}/{len(waves)}; WER difference "
          f"{rows['ct2'][3] - rows['openai'][3]:+.2f} points")
    print(f"ct2_speedup={rows['openai'][2] / rows['ct2'][2]:.3f}")
