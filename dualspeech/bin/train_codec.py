"""Prepare the acoustic codec of a recipe: train it when its backend is trainable, check its
files otherwise, and write the codec section that extraction and decoding read.

    python -m dualspeech.bin.train_codec --conf egs/mini/conf/codec_vqmel.yaml \
        --cuts data/cuts/mini_cuts_train.jsonl.gz --out-dir exp/codec_vqmel

Trainable backends (``melvq``, ``vqmel``; ``unit_hifigan`` on cuts that carry
``hubert_tokens``) read their ``<name>_train`` section; at most ``max_utterances`` cuts (a
seeded sample when there are more) are loaded at the sample rate the backend wants, unreadable
audio is skipped and counted, the checkpoint is written atomically into OUT_DIR. Pretrained
backends (``wavtokenizer``, ``hf``, a ``unit_hifigan`` without a training section) are built
once, so missing or wrong files stop here with the error that says how to get them.
Either way ``OUT_DIR/codec.yaml`` gets the ``codec`` section (with the trained checkpoint).
"""
from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

import yaml

from dualspeech.config import ConfigError, add_config_args, build, config_from_args
from dualspeech.utils.io import atomic_write_text
from dualspeech.utils.logs import setup_logging

log = logging.getLogger("dualspeech.train_codec")


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.train_codec", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--cuts", nargs="+", default=[], help="speech cut manifests to train on")
    p.add_argument("--out-dir", required=True, type=Path,
                   help="where the checkpoint and codec.yaml (the resolved codec section) go")
    args = p.parse_args(argv)
    setup_logging()
    from dualspeech.tokenizers.codecs import CODEC_TRAINERS, build_codec

    cfg = config_from_args(args)
    codec_cfg = dict(cfg.get("codec") or {})
    name = codec_cfg.get("name")
    if not name:
        raise ConfigError(f"{args.conf}: no codec section with a name")
    trainer = CODEC_TRAINERS.get(name)
    if trainer is not None and trainer.section not in cfg:
        trainer = None      # no training section: use the checkpoint the codec section names
    if trainer is None:
        try:
            codec = build_codec(codec_cfg)
        except FileNotFoundError as e:   # the message says which files and how to get them
            raise SystemExit(f"error: codec {name!r} of {args.conf}: {e}") from e
        log.info("codec %s ready (pretrained, nothing to train)", codec.identity)
    else:
        if not args.cuts:
            raise SystemExit(f"codec {name!r} is trained here: pass --cuts with training cut manifests")
        from lhotse import CutSet

        from dualspeech.tokenizers.extraction import cut_waves

        tcfg = build(trainer.config_cls, cfg.get(trainer.section), trainer.section)
        cuts = [c for path in args.cuts for c in CutSet.from_file(path)]
        if trainer.units_field:
            cuts = [c for c in cuts if c.has_custom(trainer.units_field)]
            if not cuts:
                raise SystemExit(f"codec {name!r} trains on (units, speech) pairs: the cuts of "
                                 f"{args.cuts} have no {trainer.units_field!r} field (extract it first)")
        limit = trainer.max_utterances(tcfg)
        if len(cuts) > limit:
            cuts = random.Random(getattr(tcfg, "seed", 0)).sample(cuts, limit)
        skipped: dict[str, str] = {}
        pairs = cut_waves(cuts, trainer.sample_rate(tcfg), 1024, skipped)
        if skipped:
            log.warning("skipped %d of %d cuts with unusable audio", len(skipped), len(cuts))
        examples = [(getattr(c, trainer.units_field).load(), w) if trainer.units_field else w
                    for c, w in pairs]
        args.out_dir.mkdir(parents=True, exist_ok=True)
        codec_cfg.update(trainer.train(examples, tcfg, args.out_dir))
    out = args.out_dir / "codec.yaml"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, yaml.safe_dump({"codec": codec_cfg}, sort_keys=False))
    log.info("codec section -> %s", out)
    return out


if __name__ == "__main__":
    main()
