"""Codec resynthesis quality: Whisper WER and DNSMOS of the original vs the codec-resynthesised
mini-corpus test speech, for any registered codec.

The codec comes from ``--conf`` (a YAML with a ``codec`` section, e.g. a recipe's trained
``exp/.../codec.yaml``). A trainable codec whose checkpoint does not exist yet is first trained
on the corpus's training cuts with the config's ``<name>_train`` section (the training time is
printed apart from the measurement). Both versions of each held-out English utterance are
transcribed by the same Whisper and scored against the reference; last line:
``resynth_wer_ratio=<WER resynthesised / WER original>``.
"""
from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from dualspeech.bench import register


def _english_cuts(path: Path, limit: int | None = None) -> list:
    from lhotse import CutSet

    out = []
    for cut in CutSet.from_file(path):
        sup = cut.supervisions[0] if cut.supervisions else None
        if sup is not None and sup.text and (sup.language or "English").lower().startswith("en"):
            out.append(cut)
    return out if limit is None else out[:limit]


def _codec(codec_cfg: dict, cfg: dict, train_cuts: Path, work: Path):
    """Build the codec; train it first when it is trainable and has no checkpoint yet."""
    from dualspeech.config import build
    from dualspeech.tokenizers.codecs import CODEC_TRAINERS, build_codec
    from dualspeech.tokenizers.extraction import cut_waves

    trainer = CODEC_TRAINERS.get(codec_cfg["name"])
    if trainer is not None and trainer.units_field:
        raise SystemExit(f"codec {codec_cfg['name']!r} decodes units, not speech: nothing to resynthesise")
    train_s = 0.0
    if trainer is not None and not Path(str(codec_cfg.get("checkpoint", ""))).is_file():
        tcfg = build(trainer.config_cls, cfg.get(trainer.section), trainer.section)
        cuts = _english_cuts(train_cuts)
        if len(cuts) > trainer.max_utterances(tcfg):
            cuts = random.Random(0).sample(cuts, trainer.max_utterances(tcfg))
        waves = [w for _, w in cut_waves(cuts, trainer.sample_rate(tcfg), 1024, {})]
        t0 = time.perf_counter()
        trained = trainer.train(waves, tcfg, work)
        train_s = time.perf_counter() - t0
        if codec_cfg.get("checkpoint") and "checkpoint" in trained:   # kept where --conf names it
            Path(codec_cfg["checkpoint"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(trained["checkpoint"], codec_cfg["checkpoint"])
            trained["checkpoint"] = codec_cfg["checkpoint"]
        codec_cfg = {**codec_cfg, **trained}
    return build_codec(codec_cfg), train_s


@register("codec_resynthesis", "Whisper WER + DNSMOS of codec-resynthesised vs original mini speech")
def run(argv: list[str]) -> None:
    import torch

    from dualspeech.audio import resample
    from dualspeech.config import load_config
    from dualspeech.metrics.dnsmos import default_dnsmos
    from dualspeech.metrics.text import edit_counts
    from dualspeech.metrics.transcribe import WhisperTranscriber
    from dualspeech.tokenizers.extraction import cut_waves

    p = argparse.ArgumentParser(prog="bench codec_resynthesis", description=__doc__)
    p.add_argument("--conf", default="egs/mini/conf/codec_vqmel.yaml",
                   help="YAML with the codec section (and, to train it here, its <name>_train section)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set codec.checkpoint=exp/codec_vqmel/vqmel.pt")
    p.add_argument("--data-dir", default="egs/mini/db/mini_default",
                   help="mini corpus root with cuts/mini_cuts_<part>.jsonl.gz (make_mini_corpus)")
    p.add_argument("--eval-part", default="test")
    p.add_argument("--num-eval", type=int, default=24, help="English utterances scored")
    p.add_argument("--whisper", default="whisper:tiny.en")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--stages", action="store_true",
                   help="also score the codec's intermediate resyntheses where it has them "
                        "(vqmel: the vocoder on the original mel, the autoencoder without its "
                        "quantiser), which split the loss between vocoder, network and codebook")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cuts_dir = Path(args.data_dir) / "cuts"
    if not cuts_dir.is_dir():
        raise SystemExit(f"{cuts_dir} not found: generate the corpus with `python -m "
                         "dualspeech.bin.make_mini_corpus --out-dir DIR` and pass --data-dir DIR")
    cfg = load_config(args.conf, args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        codec, train_s = _codec(dict(cfg["codec"]), cfg, cuts_dir / "mini_cuts_train.jsonl.gz", Path(tmp))
        t_start = time.perf_counter()
        skipped: dict[str, str] = {}
        evals = cut_waves(_english_cuts(cuts_dir / f"mini_cuts_{args.eval_part}.jsonl.gz", args.num_eval),
                          codec.sample_rate, 1024, skipped)
        t0 = time.perf_counter()
        ids = codec.encode([w for _, w in evals])
        enc_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        resynth = codec.decode(ids)
        dec_s = time.perf_counter() - t0
        stages = {}
        if args.stages:
            if not hasattr(codec, "resynthesis_stages"):
                raise SystemExit(f"--stages: codec {codec.name!r} has no intermediate resyntheses")
            stages = codec.resynthesis_stages([w for _, w in evals])
    refs = [c.supervisions[0].text for c, _ in evals]
    versions = {"original": [resample(w, codec.sample_rate, 16000) for _, w in evals],
                **{name: [resample(w, codec.sample_rate, 16000) for w in ws]
                   for name, ws in stages.items()},
                "resynthesised": [resample(w, codec.sample_rate, 16000) for w in resynth]}
    asr, mos = WhisperTranscriber(args.whisper), default_dnsmos()
    rows = {}
    for name, waves in versions.items():
        wer = edit_counts(refs, asr.transcribe_waves(waves)).rate
        scores = [mos.score_wave(np.clip(w, -1, 1)) for w in waves]
        rows[name] = (wer, np.mean([s["ovrl"] for s in scores]), np.mean([s["p808"] for s in scores]))
    audio_s = sum(len(w) for w in versions["original"]) / 16000
    n_ids = sum(len(i) for i in ids)
    print(f"codec {codec.identity}: {codec.codebook_size} codes x {codec.num_codebooks}, "
          f"{codec.frame_rate:.2f} tokens/s, {codec.sample_rate} Hz; {len(evals)} {args.eval_part} "
          f"utterances ({audio_s:.0f} s, {len(skipped)} skipped), {len(set(np.concatenate(ids).ravel().tolist()))} "
          f"distinct codes of {n_ids}")
    print(f"training {train_s:.0f} s (0: a trained checkpoint); encode {enc_s:.1f} s, decode "
          f"{dec_s:.1f} s; measurement {time.perf_counter() - t_start:.0f} s; scorer {args.whisper}")
    print(f"{'speech':<20}{'WER %':>8}{'DNSMOS OVRL':>13}{'DNSMOS P.808':>14}")
    for name, (wer, ovrl, p808) in rows.items():
        print(f"{name:<20}{wer:>8.2f}{ovrl:>13.2f}{p808:>14.2f}")
    ratio = rows["resynthesised"][0] / max(rows["original"][0], 1e-9)
    print(f"resynth_wer_ratio={ratio:.3f}")
