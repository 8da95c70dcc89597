"""Generate the offline 8-task mini corpus with its built-in voices (piper, festival, flite, pico).

Writes OUT_DIR/audio, OUT_DIR/manifests/mini_{recordings,supervisions}_<part>.jsonl.gz,
OUT_DIR/cuts/mini_cuts_<part>.jsonl.gz and OUT_DIR/tasks/mini_<task>_<part>.jsonl.gz for
part in train/dev/test. Same arguments -> byte-identical output; an unchanged re-run is a no-op.
The engines come from tools/install.sh (Debian packages + pip); a missing one is an error that
names its install command.
"""
from __future__ import annotations

import argparse
import sys

from dualspeech.data.mini import SIZES, make_mini_corpus
from dualspeech.data.synth import SynthesisError
from dualspeech.utils.logs import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.make_mini_corpus", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True, help="output directory (e.g. data/mini)")
    p.add_argument("--size", choices=sorted(SIZES), default="default",
                   help="tiny: CI (160 utts, ~6 min of speech); small: 590 utts; default: the demo "
                        "(1950 utts, ~1.3 h of speech)")
    p.add_argument("--seed", type=int, default=0, help="random seed (sentences, speakers, pairs)")
    p.add_argument("--nj", type=int, default=2, help="parallel TTS jobs")
    p.add_argument("--force", action="store_true", help="regenerate even if up to date")
    return p


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        make_mini_corpus(args.out_dir, size=args.size, seed=args.seed, nj=args.nj,
                         force=args.force)
    except SynthesisError as e:
        sys.exit(f"ERROR: {e}")


if __name__ == "__main__":
    main()
