"""Prepare a real corpus into Lhotse manifests + task examples (one subcommand per corpus).

Writes OUTPUT_DIR/manifests/<corpus>_{recordings,supervisions}_<part>.jsonl.gz,
OUTPUT_DIR/cuts/<corpus>_cuts_<part>.jsonl.gz, OUTPUT_DIR/tasks/<corpus>_<task>_<part>.jsonl.gz
and OUTPUT_DIR/skipped_<corpus>.log (inputs dropped and why). An unchanged re-run is a no-op;
--force re-runs. `python -m dualspeech.bin.prepare_corpus <corpus> --help` shows the expected
on-disk layout of each corpus. docs/data.md has the details.
"""
from __future__ import annotations

import argparse
import sys

import dualspeech.data.corpora  # noqa: F401  (registers every corpus)
from dualspeech.data.corpora.common import PREPARERS, CorpusLayoutError
from dualspeech.data.synth import SynthesisError
from dualspeech.utils.logs import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.prepare_corpus", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    for name, prep in PREPARERS.items():
        s = sub.add_parser(name, help=prep.help, description=f"{prep.help}\n\n{prep.doc}\n"
                           f"Expected layout:\n{prep.layout}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        s.add_argument("--corpus-dir", required=True, help="corpus root (see layout above)")
        s.add_argument("--output-dir", required=True, help="e.g. data (manifests/, cuts/, tasks/ go here)")
        s.add_argument("--force", action="store_true", help="re-run even if up to date")
        s.add_argument("--nj", type=int, default=2, help="parallel jobs (audio header reads, TTS)")
        prep.options(s)
    return p


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        PREPARERS[args.corpus].run(args)
    except (CorpusLayoutError, SynthesisError) as e:
        sys.exit(f"ERROR: {e}")


if __name__ == "__main__":
    main()
