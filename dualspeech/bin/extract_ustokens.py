"""Add USTokens to a cut manifest: ``ustokens`` (TemporalArray of int16 ids, frame_shift 0.04 s,
stored in HDF5) and ``ustokens_source`` (``ustokenizer:<short sha256 of the checkpoint>``).

  python -m dualspeech.bin.extract_ustokens --checkpoint exp/ustokenizer_mini/final.pt \\
      --cuts data/cuts/mini_cuts_train.jsonl.gz --out-cuts dump/ustokens/mini_cuts_train.jsonl.gz \\
      --storage-dir dump/ustokens/mini.train [--nj 4 --job 2]

Loads Whisper and the tokenizer once (never the LLM), groups cuts of similar duration into
batches (--max-duration seconds of encoder input, at most --batch-size cuts) and runs on the
GPU when there is one. Sharded and resumable like every extractor
(dualspeech.tokenizers.extraction): run --nj jobs with --job 0..nj-1, or leave --job out to
run them all here; the last job to finish merges, in input order. Skipped cuts (unreadable
audio, non-finite samples, shorter than one token) are counted in the log, listed in
<storage-dir>/skipped.tsv and left without ustokens. Other sample rates are resampled; audio over
30 s is encoded in 30 s windows whose tokens are concatenated. On CUDA the Whisper encoder runs
under bf16 autocast (--autocast; ~0.4 % of ids differ from fp32); the choice is recorded in
<storage-dir>/meta.json, so shards of one extraction cannot mix precisions.
"""
from __future__ import annotations

import argparse

from dualspeech.utils.logs import setup_logging
from dualspeech.utils.procs import die_with_job_launcher


def main(argv: list[str] | None = None):
    die_with_job_launcher()     # a killed recipe leaves no extraction job writing
    import torch

    from dualspeech.tokenizers.extraction import (add_extraction_args, resolve_device, run_extraction,
                                                  token_dtype)
    from dualspeech.tokenizers.ustokenizer.checkpoint import load_tokenizer
    from dualspeech.tokenizers.ustokenizer.extract import AUTOCAST, tokenize_cuts, whisper_autocast_dtype
    from dualspeech.tokenizers.ustokenizer.model import FRAME_SHIFT
    from dualspeech.utils.io import short_hash

    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.extract_ustokens", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="final.pt written by train_ustokenizer")
    add_extraction_args(p, batch_size=64)
    p.add_argument("--max-duration", type=float, default=300.0,
                   help="seconds of encoder input per batch (a 30 s padded cut counts 30 s)")
    p.add_argument("--num-workers", type=int, default=0, help="audio loading processes")
    p.add_argument("--autocast", choices=["auto", *AUTOCAST], default="auto",
                   help="dtype of the Whisper encoder: auto = bf16 on CUDA, fp32 on CPU")
    args = p.parse_args(argv)
    setup_logging()
    device = resolve_device(args.device)
    tokenizer = load_tokenizer(args.checkpoint, device)
    cfg = tokenizer.cfg
    settings = {"whisper": cfg.whisper, "codebook_size": cfg.vq.codebook_size,
                "pad_to_30s": cfg.pad_to_30s,
                "whisper_dtype": str(whisper_autocast_dtype(device, args.autocast) or torch.float32)}

    def extract(cuts, skipped):
        return tokenize_cuts(tokenizer, cuts, skipped, args.max_duration, args.batch_size,
                             args.num_workers, args.autocast)

    return run_extraction(args, "ustokens", f"ustokenizer:{short_hash(args.checkpoint)}", settings,
                          extract, frame_shift=FRAME_SHIFT, dtype=token_dtype(cfg.vq.codebook_size))


if __name__ == "__main__":
    main()
