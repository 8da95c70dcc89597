"""Generate the offline codec corpus: every installed voice except the mini corpus's test voices
(festival, flite, pico, espeak-ng and pitch shifts of them), mini-grammar sentences other than
the mini test sentences, four speaking styles; 22.05 kHz.

Writes OUT_DIR/audio/train, OUT_DIR/manifests/codec_{recordings,supervisions}_train.jsonl.gz and
OUT_DIR/cuts/codec_cuts_train.jsonl.gz. Same arguments -> byte-identical output; an unchanged
re-run is a no-op. Used by egs/codec/run.sh (the shipped codec's recipe).
"""
from __future__ import annotations

import argparse
import sys

from dualspeech.data.codec_corpus import VOICES, make_codec_corpus
from dualspeech.data.synth import SynthesisError
from dualspeech.utils.logs import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.make_codec_corpus", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True, help="output directory (e.g. db/codec)")
    p.add_argument("--utts-per-voice", type=int, default=120,
                   help=f"utterances per voice ({len(VOICES)} voices; 120: ~2 h of speech)")
    p.add_argument("--seed", type=int, default=0, help="random seed (sentences)")
    p.add_argument("--nj", type=int, default=2, help="parallel TTS jobs")
    p.add_argument("--force", action="store_true", help="regenerate even if up to date")
    return p


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    if args.utts_per_voice < 1:
        sys.exit(f"ERROR: --utts-per-voice must be >= 1, got {args.utts_per_voice}")
    try:
        make_codec_corpus(args.out_dir, utts_per_voice=args.utts_per_voice, seed=args.seed,
                          nj=args.nj, force=args.force)
    except SynthesisError as e:
        sys.exit(f"ERROR: {e}")


if __name__ == "__main__":
    main()
