"""HuBERT k-means tokens for speech cuts (the paper's Baseline-Semantic / DualSpeechLM-HuBERT
input): TemporalArray ``hubert_tokens`` (frame_shift = 1 / HuBERT frame rate, int16 ids) plus
``hubert_tokens_source`` = model + layer + k-means identity.

Train the k-means once (on a subset of the training cuts; --cuts/--storage-dir are then
unused), then extract sharded:
  python -m dualspeech.bin.extract_hubert --conf conf/hubert_kmeans.yaml --train-only \\
      --train-cuts data/cuts/corpus_cuts_train.jsonl.gz --cuts unused --storage-dir unused
  python -m dualspeech.bin.extract_hubert --conf conf/hubert_kmeans.yaml \\
      --cuts dump/cuts/corpus_cuts_train.jsonl.gz --storage-dir dump/hubert/train --nj 4 --job 0
If ``hubert.kmeans`` does not exist and --train-cuts is given, it is trained first.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dualspeech.config import ConfigError, add_config_args, build, config_from_args
from dualspeech.utils.logs import setup_logging
from dualspeech.utils.procs import die_with_job_launcher

FIELD = "hubert_tokens"


def main(argv: list[str] | None = None):
    die_with_job_launcher()     # a killed recipe leaves no extraction job writing
    from dualspeech.tokenizers.extraction import (add_extraction_args, cut_waves, resolve_device,
                                                  run_extraction, token_dtype, wave_batches)
    from dualspeech.tokenizers.hubert import HubertConfig, HubertTokenizer, train_hubert_kmeans

    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.extract_hubert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    add_extraction_args(p)
    p.add_argument("--train-cuts", nargs="+", default=None,
                   help="cuts to train the k-means on when hubert.kmeans does not exist yet")
    p.add_argument("--train-only", action="store_true", help="train the k-means and stop")
    args = p.parse_args(argv)
    setup_logging()
    device = resolve_device(args.device)
    cfg_all = config_from_args(args)
    if "hubert" not in cfg_all:
        raise ConfigError(f"{args.conf}: no 'hubert' section")
    cfg = build(HubertConfig, cfg_all["hubert"], where="hubert")
    if not Path(cfg.kmeans).is_file():
        if not args.train_cuts:
            raise SystemExit(f"{cfg.kmeans} does not exist: pass --train-cuts to train the k-means")
        from lhotse import CutSet

        cuts = [c for path in args.train_cuts for c in CutSet.from_file(path)][: cfg.max_utterances]
        skipped: dict[str, str] = {}
        waves = [w for _, w in cut_waves(cuts, 16000, 640, skipped)]
        if skipped:
            logging.warning("k-means training: skipped %d cuts with unusable audio", len(skipped))
        train_hubert_kmeans(cfg, waves, device)
    if args.train_only:
        return None
    tok = HubertTokenizer(cfg, device)

    def extract(cuts, skipped):
        for batch, waves in wave_batches(cuts, args.batch_size, 16000, tok.features.min_samples,
                                         skipped):
            yield from zip(batch, tok.tokenize(waves))

    settings = {"layer": cfg.layer, "num_clusters": tok.codebook_size, "frame_rate": tok.frame_rate}
    return run_extraction(args, FIELD, tok.identity, settings, extract,
                          frame_shift=1.0 / tok.frame_rate, dtype=token_dtype(tok.codebook_size))


if __name__ == "__main__":
    main()
