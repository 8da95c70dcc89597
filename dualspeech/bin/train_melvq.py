"""Train the offline MelVQ codec (k-means over log-mel frames, Griffin-Lim decoding) on corpus cuts.

    python -m dualspeech.bin.train_melvq --conf egs/mini/conf/codec_melvq.yaml \
        --cuts data/cuts/mini_cuts_train.jsonl.gz --out exp/codec_melvq/melvq.pt

Reads the ``melvq_train`` section of the config (dualspeech.tokenizers.codecs.melvq
.MelVQTrainConfig); at most ``max_utterances`` cuts, a seeded sample when there are more, are
loaded at the codec's sample rate. Unreadable audio is skipped and counted. The checkpoint is
written atomically; the ``codec`` section with ``checkpoint:`` pointing at it is what
``extract_acoustic`` and ``decode --codec-conf`` read.
"""
from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path

from dualspeech.config import add_config_args, build, config_from_args
from dualspeech.utils.logs import setup_logging

log = logging.getLogger("dualspeech.train_melvq")


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.train_melvq", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--cuts", nargs="+", required=True, help="speech cut manifests to train on")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (.pt)")
    args = p.parse_args(argv)
    setup_logging()
    from lhotse import CutSet

    from dualspeech.tokenizers.codecs.melvq import MelVQTrainConfig, train_melvq
    from dualspeech.tokenizers.extraction import cut_waves

    cfg = build(MelVQTrainConfig, config_from_args(args).get("melvq_train"), "melvq_train")
    cuts = [c for path in args.cuts for c in CutSet.from_file(path)]
    if len(cuts) > cfg.max_utterances:
        cuts = random.Random(cfg.seed).sample(cuts, cfg.max_utterances)
    skipped: dict[str, str] = {}
    waves = [w for _, w in cut_waves(cuts, cfg.features.sample_rate, cfg.features.hop, skipped)]
    if skipped:
        log.warning("skipped %d of %d cuts with unusable audio", len(skipped), len(cuts))
    return train_melvq(waves, cfg, args.out)


if __name__ == "__main__":
    main()
