"""Add acoustic codec tokens to a cut manifest: ``acoustic_tokens`` (TemporalArray of int16 ids,
frame_shift = 1 / codec frame rate), ``acoustic_tokens_source`` = the codec identity.

    python -m dualspeech.bin.extract_acoustic --conf exp/codec_melvq/codec.yaml \
        --cuts dump/ustokens/mini_cuts_train.jsonl.gz --out-cuts dump/acoustic/mini_cuts_train.jsonl.gz \
        --storage-dir dump/acoustic/mini.train --nj 4 --job 0

The ``codec`` section of the config picks the backend (dualspeech.tokenizers.codecs). Sharded
and resumable as described in dualspeech.tokenizers.extraction: run --nj jobs with --job
0..nj-1 (or leave --job out to run them all here); the last job to finish merges.
"""
from __future__ import annotations

import argparse

from dualspeech.config import load_yaml
from dualspeech.utils.logs import setup_logging
from dualspeech.utils.procs import die_with_job_launcher


def main(argv: list[str] | None = None):
    die_with_job_launcher()     # a killed recipe leaves no extraction job writing
    from dualspeech.tokenizers.extraction import (add_extraction_args, resolve_device, run_extraction,
                                                  token_dtype, wave_batches)

    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.extract_acoustic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", required=True, help="YAML with a codec section")
    add_extraction_args(p)
    args = p.parse_args(argv)
    setup_logging()
    from dualspeech.tokenizers.codecs import build_codec

    codec = build_codec(load_yaml(args.conf).get("codec")).to(resolve_device(args.device))
    min_samples = int(codec.sample_rate / codec.frame_rate)

    def extract(cuts, skipped):
        for batch, waves in wave_batches(cuts, args.batch_size, codec.sample_rate, min_samples,
                                         skipped):
            yield from zip(batch, codec.encode(waves))

    return run_extraction(args, "acoustic_tokens", codec.identity, codec.describe(), extract,
                          frame_shift=1.0 / codec.frame_rate, dtype=token_dtype(codec.codebook_size))


if __name__ == "__main__":
    main()
