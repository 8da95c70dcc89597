"""Run a named benchmark: ``python -m dualspeech.bin.bench NAME [benchmark options]``."""
from __future__ import annotations

import argparse
import sys

from dualspeech.bench import discover


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    benchmarks = discover()
    if argv and argv[0] in benchmarks:      # everything after NAME, --help included, is its own
        benchmarks[argv[0]][0](argv[1:])
        return
    parser = argparse.ArgumentParser(
        prog="python -m dualspeech.bin.bench", description=__doc__,
        epilog="Each benchmark prints a table and, last, one key=value line with its headline "
               "ratio. `NAME --help` shows a benchmark's own options.")
    parser.add_argument("name", nargs="?", choices=sorted(benchmarks), metavar="NAME",
                        help="one of: " + ", ".join(sorted(benchmarks)))
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.parse_args(argv)
    for name, (_, help_text) in sorted(benchmarks.items()):
        print(f"{name:24s} {help_text}")


if __name__ == "__main__":
    main()
