#!/usr/bin/env python3
"""Download the paper-scale pretrained models on a machine with internet access.

Files land in the same layout as the dualspeech model cache (``OUT/whisper/<name>.pt``,
``OUT/hf/<org>--<repo>/``), so with ``--out`` left at its default the specs resolve offline
afterwards, and a copied OUT folder works on an offline machine when
``DUALSPEECH_CACHE=OUT`` is set there (or when the printed paths are put into the configs).

Downloads need ``DUALSPEECH_ALLOW_NETWORK=1``: nothing in DualSpeech touches the network
unless asked. Gated Hugging Face repos (meta-llama) need ``huggingface-cli login`` or
``HF_TOKEN`` and an accepted licence on the hub.

Examples:
  DUALSPEECH_ALLOW_NETWORK=1 python tools/download_models.py whisper:medium hf:meta-llama/Llama-3.2-1B
  DUALSPEECH_ALLOW_NETWORK=1 python tools/download_models.py paper --out /data/models
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualspeech import pretrained  # noqa: E402

GROUPS = {"paper": sorted(pretrained.DOWNLOADABLE)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    known = "\n".join(f"  {spec:46s} {text}" for spec, text in pretrained.DOWNLOADABLE.items())
    parser = argparse.ArgumentParser(
        prog="python tools/download_models.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"known models:\n{known}\n  {'paper':46s} all of the above\n"
               "Any other whisper:<name> (openai-whisper names) or hf:<org>/<repo> works too.")
    parser.add_argument("names", nargs="+", metavar="NAME",
                        help="model specs (whisper:<name>, hf:<org>/<repo>) or 'paper'")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"models dir (default: the dualspeech cache, "
                             f"${pretrained.CACHE_ENV} or ~/.cache/dualspeech)")
    return parser.parse_args(argv)


def expand(names: list[str]) -> list[str]:
    specs = []
    for name in names:
        for spec in GROUPS.get(name, [name]):
            if spec.split(":", 1)[0] not in ("whisper", "hf"):
                raise SystemExit(f"error: {spec!r} is not downloadable; expected whisper:<name>, "
                                 "hf:<org>/<repo> or 'paper' (the offline models need no download)")
            specs.append(spec)
    return specs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    specs = expand(args.names)
    if not pretrained.network_allowed():
        print(f"error: this downloads {', '.join(specs)} from the internet; run it again with "
              f"{pretrained.NETWORK_ENV}=1 set (on a machine with network access)", file=sys.stderr)
        return 2
    if args.out is not None:
        os.environ[pretrained.CACHE_ENV] = str(args.out.resolve())
    done = {}
    for spec in specs:
        logging.info("fetching %s into %s", spec, pretrained.cached_path(spec))
        done[spec] = pretrained.resolve(spec)
    print(f"\nDownloaded into {pretrained.cache_dir()}. In a config use either the spec (it "
          f"resolves through ${pretrained.CACHE_ENV}={pretrained.cache_dir()}) or the path:")
    for spec, path in done.items():
        print(f'  "{spec}"    # or: "{path}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
