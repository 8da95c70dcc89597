"""Run a named benchmark: ``python -m dualspeech.bin.bench NAME [benchmark options]``."""
from __future__ import annotations

import argparse
import sys

from dualspeech.bench import discover


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    benchmarks = discover()
    parser = argparse.ArgumentParser(
        prog="python -m dualspeech.bin.bench", description=__doc__,
        epilog="Each benchmark prints a table and, last, one key=value line with its headline "
               "ratio. Use `NAME --help` for a benchmark's own options.")
    parser.add_argument("name", nargs="?", choices=sorted(benchmarks), metavar="NAME")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args, rest = parser.parse_known_args(argv)
    if args.list or not args.name:
        for name, (_, help_text) in sorted(benchmarks.items()):
            print(f"{name:24s} {help_text}")
        return
    benchmarks[args.name][0](rest)


if __name__ == "__main__":
    main()
