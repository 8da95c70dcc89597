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

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONF = REPO / "egs/mini/conf/codec_unitmel.yaml"      # the shipped codec, as the demo uses it
DEFAULT_CORPUS = REPO / "egs/mini/db/mini_default"


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


def _speakers(codec, waves: list[np.ndarray]):
    """A speaker-conditioned codec resynthesises each utterance in its own voice: the embedding
    of the original, made by the codec's speaker encoder (None for codecs whose ids carry it)."""
    if codec.speaker_identity is None:
        return None
    from dualspeech.audio import resample
    from dualspeech.tokenizers.speaker import build_speaker_encoder

    enc = build_speaker_encoder(dict(codec.speaker_config))
    return list(enc.embed([resample(w, codec.sample_rate, 16000) for w in waves]))


def _resynthesise(codec, cuts_path: Path, num: int, stages: bool) -> dict:
    """Encode and decode ``num`` English utterances; their references, the 16 kHz versions to
    score (original, any intermediate stages, resynthesised) and the codec's timings."""
    from dualspeech.audio import resample
    from dualspeech.tokenizers.extraction import cut_waves

    skipped: dict[str, str] = {}
    evals = cut_waves(_english_cuts(cuts_path, num), codec.sample_rate, 1024, skipped)
    waves = [w for _, w in evals]
    t0 = time.perf_counter()
    ids = codec.encode(waves)
    enc_s = time.perf_counter() - t0
    speakers = _speakers(codec, waves)
    t0 = time.perf_counter()
    resynth = codec.decode(ids, speakers)
    dec_s = time.perf_counter() - t0
    inner = {}
    if stages:
        if not hasattr(codec, "resynthesis_stages"):
            raise SystemExit(f"--stages: codec {codec.name!r} has no intermediate resyntheses")
        inner = codec.resynthesis_stages(waves)
    return {"refs": [c.supervisions[0].text for c, _ in evals], "ids": ids, "skipped": len(skipped),
            "enc_s": enc_s, "dec_s": dec_s,
            "versions": {name: [resample(w, codec.sample_rate, 16000) for w in ws] for name, ws in
                         {"original": waves, **inner, "resynthesised": resynth}.items()}}


@register("codec_resynthesis", "Whisper WER + DNSMOS of codec-resynthesised vs original mini speech")
def run(argv: list[str]) -> None:
    import torch

    from dualspeech.config import load_config
    from dualspeech.metrics.dnsmos import default_dnsmos
    from dualspeech.metrics.text import edit_counts
    from dualspeech.metrics.transcribe import WhisperTranscriber

    p = argparse.ArgumentParser(prog="bench codec_resynthesis", description=__doc__)
    p.add_argument("--conf", default=str(DEFAULT_CONF),
                   help="YAML with the codec section (and, to train it here, its <name>_train "
                        "section); default: the shipped codec the demo uses")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set codec.checkpoint=exp/codec_vqmel/vqmel.pt")
    p.add_argument("--data-dir", default=str(DEFAULT_CORPUS),
                   help="mini corpus root with cuts/mini_cuts_<part>.jsonl.gz; the default demo "
                        "corpus is made there first when absent")
    p.add_argument("--eval-part", default="test", help="the part the ratio is measured on (test: "
                   "the 3 voices no codec of the project trains on)")
    p.add_argument("--seen-part", default="dev", help="a second part in the same table (dev: "
                   "training voices); '' for none")
    p.add_argument("--num-eval", type=int, default=24, help="English utterances scored per part")
    p.add_argument("--whisper", default="whisper:base")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--stages", action="store_true",
                   help="also score the codec's intermediate resyntheses where it has them "
                        "(vqmel: the vocoder on the original mel, the autoencoder without its "
                        "quantiser), which split the loss between vocoder, network and codebook")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cuts_dir = Path(args.data_dir) / "cuts"
    if not cuts_dir.is_dir():
        if Path(args.data_dir).resolve() != DEFAULT_CORPUS.resolve():
            raise SystemExit(f"{cuts_dir} not found: generate the corpus with `python -m "
                             "dualspeech.bin.make_mini_corpus --out-dir DIR` and pass --data-dir DIR")
        from dualspeech.data.mini import make_mini_corpus

        make_mini_corpus(args.data_dir, size="default")
    cfg = load_config(args.conf, args.overrides)
    parts = [args.eval_part] + ([args.seen_part] if args.seen_part else [])
    with tempfile.TemporaryDirectory() as tmp:
        codec, train_s = _codec(dict(cfg["codec"]), cfg, cuts_dir / "mini_cuts_train.jsonl.gz", Path(tmp))
        t_start = time.perf_counter()
        made = {part: _resynthesise(codec, cuts_dir / f"mini_cuts_{part}.jsonl.gz", args.num_eval,
                                    args.stages) for part in parts}
    asr, mos = WhisperTranscriber(args.whisper), default_dnsmos()
    rows = {}
    for part, m in made.items():
        for name, waves in m["versions"].items():
            wer = edit_counts(m["refs"], asr.transcribe_waves(waves)).rate
            scores = [mos.score_wave(np.clip(w, -1, 1)) for w in waves]
            rows[part, name] = (wer, np.mean([s["ovrl"] for s in scores]),
                                np.mean([s["p808"] for s in scores]))
    print(f"codec {codec.identity}: {codec.codebook_size} codes x {codec.num_codebooks}, "
          f"{codec.frame_rate:.2f} tokens/s, {codec.sample_rate} Hz; scorer {args.whisper}")
    for part, m in made.items():
        audio_s = sum(len(w) for w in m["versions"]["original"]) / 16000
        ids = np.concatenate(m["ids"]).ravel()
        print(f"{part}: {len(m['refs'])} utterances ({audio_s:.0f} s, {m['skipped']} skipped), "
              f"{len(set(ids.tolist()))} distinct codes of {len(ids)}; encode {m['enc_s']:.1f} s, "
              f"decode {m['dec_s']:.1f} s")
    print(f"training {train_s:.0f} s (0: a trained checkpoint); measurement "
          f"{time.perf_counter() - t_start:.0f} s")
    print(f"{'part':<6}{'speech':<20}{'WER %':>8}{'DNSMOS OVRL':>13}{'DNSMOS P.808':>14}")
    for (part, name), (wer, ovrl, p808) in rows.items():
        print(f"{part:<6}{name:<20}{wer:>8.2f}{ovrl:>13.2f}{p808:>14.2f}")
    ratio = {part: rows[part, "resynthesised"][0] / max(rows[part, "original"][0], 1e-9)
             for part in parts}
    if args.seen_part:
        print(f"seen_resynth_wer_ratio={ratio[args.seen_part]:.3f} ({args.seen_part})")
    print(f"resynth_wer_ratio={ratio[args.eval_part]:.3f}")
