"""Build the offline model cache ahead of time, or show what is cached.

``prepare`` converts / builds every given spec once (Whisper tiny.en from CTranslate2, SmolLM2
from GGUF, the random debug models) so later stages start fast; ``list`` shows the known specs
and whether each is usable offline right now.
"""
from __future__ import annotations

import argparse
import sys
import time

from dualspeech import pretrained
from dualspeech.utils.logs import setup_logging

OFFLINE_DEFAULTS = ["whisper:tiny.en", "llm:smollm2-135m-instruct", "random:whisper-debug",
                    "random:llama-debug"]


def availability(spec: str) -> tuple[str, str]:
    """(status, location) of a known spec without building or downloading anything."""
    scheme = spec.split(":", 1)[0]
    if scheme in ("speaker", "dnsmos", "asset"):   # files shipped in a package
        try:
            return "ready (pip package)", str(pretrained.resolve(spec))
        except pretrained.PretrainedNotFound as e:
            return "missing", str(e)
    path = pretrained.cached_path(spec)
    if path.exists():
        return "cached", str(path)
    if spec in pretrained.BUILTIN:
        return "built on first use", str(path)
    return "needs download", str(path)


def cmd_list(args: argparse.Namespace) -> int:
    print(f"cache dir: {pretrained.cache_dir()}  (set ${pretrained.CACHE_ENV} to move it)")
    print(f"network:   {'allowed' if pretrained.network_allowed() else 'off'}"
          f"  (${pretrained.NETWORK_ENV}=1 allows hub downloads)\n")
    rows = [(spec, *availability(spec), help_text)
            for table in (pretrained.BUILTIN, pretrained.DOWNLOADABLE)
            for spec, help_text in table.items()]
    width = max(len(r[0]) for r in rows)
    print(f"{'spec':{width}}  {'status':20}  description / location")
    for spec, status, where, help_text in rows:
        print(f"{spec:{width}}  {status:20}  {help_text}\n{'':{width}}  {'':20}  {where}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    failed = 0
    for spec in args.specs or OFFLINE_DEFAULTS:
        start = time.time()
        try:
            path = pretrained.resolve(spec)
        except (pretrained.PretrainedNotFound, ValueError) as e:
            print(f"FAILED {spec}: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"{spec} -> {path}  ({time.time() - start:.1f} s)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dualspeech.bin.pretrained", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="resolve specs now, building cached copies")
    prepare.add_argument("specs", nargs="*", metavar="SPEC",
                         help=f"model specs or paths (default: {' '.join(OFFLINE_DEFAULTS)})")
    prepare.set_defaults(func=cmd_prepare)
    sub.add_parser("list", help="show known specs and their cache status").set_defaults(func=cmd_list)
    args = parser.parse_args(argv)
    setup_logging()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
