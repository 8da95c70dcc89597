"""Fill README's results summary from a committed RESULTS.md (no hand-copied numbers).

    python -m dualspeech.bin.results_summary            # rewrite README.md's block
    python -m dualspeech.bin.results_summary --check    # exit 1 if the block is stale

README.md holds a block between two markers (``<!-- results-summary: ... -->``); this replaces
it with the headline rows of the table (metrics/summary.py), the commit and corpus fingerprint
the table names and the computed "beyond its shuffled-speech control" claim. Run it after
committing a new egs/mini/RESULTS.md; test/metrics/test_results_summary.py fails while README is stale.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dualspeech.metrics.summary import replace_block, summarize
from dualspeech.utils.io import atomic_write_text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.results_summary", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("egs/mini/RESULTS.md"),
                   help="the table stage 8 wrote (default: egs/mini/RESULTS.md)")
    p.add_argument("--readme", type=Path, default=Path("README.md"),
                   help="the file whose results-summary block is filled (default: README.md)")
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 if the block differs from what RESULTS.md gives")
    args = p.parse_args(argv)
    try:
        readme = args.readme.read_text()
        block = summarize(args.results, os.path.relpath(args.results, args.readme.parent))
        updated = replace_block(readme, block, str(args.readme))
    except (OSError, ValueError) as e:
        sys.exit(f"ERROR: {e}")
    if updated == readme:
        print(f"{args.readme}: the results summary matches {args.results}")
    elif args.check:
        sys.exit(f"{args.readme}: the results summary is stale; run python -m "
                 f"dualspeech.bin.results_summary --results {args.results} --readme {args.readme}")
    else:
        atomic_write_text(args.readme, updated)
        print(f"{args.readme}: results summary rewritten from {args.results}")


if __name__ == "__main__":
    main()
