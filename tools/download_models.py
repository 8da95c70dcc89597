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
  DUALSPEECH_ALLOW_NETWORK=1 python tools/download_models.py wavtokenizer \
      --link-into egs/multitask/exp/wavtokenizer     # the two files codec_wavtokenizer.yaml reads
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dualspeech import pretrained  # noqa: E402

WAVTOKENIZER = "hf:novateur/WavTokenizer-large-unify-40token"
# the files of that repo that egs/multitask/conf/codec_wavtokenizer.yaml points at
WAVTOKENIZER_FILES = ("wavtokenizer_large_unify_600_24k.ckpt",
                      "wavtokenizer_smalldata_frame40_3s_nq1_code4096_dim512_kmeans200_attn.yaml")
GROUPS = {"paper": sorted(pretrained.DOWNLOADABLE), "wavtokenizer": [WAVTOKENIZER]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    known = "\n".join(f"  {spec:46s} {text}" for spec, text in pretrained.DOWNLOADABLE.items())
    parser = argparse.ArgumentParser(
        prog="python tools/download_models.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"known models:\n{known}\n  {'paper':46s} all of the above\n"
               f"  {'wavtokenizer':46s} {WAVTOKENIZER} (use with --link-into)\n"
               "Any other whisper:<name> (openai-whisper names) or hf:<org>/<repo> works too.")
    parser.add_argument("names", nargs="+", metavar="NAME",
                        help="model specs (whisper:<name>, hf:<org>/<repo>) or 'paper'")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"models dir (default: the dualspeech cache, "
                             f"${pretrained.CACHE_ENV} or ~/.cache/dualspeech)")
    parser.add_argument("--link-into", type=Path, default=None, metavar="DIR",
                        help="with wavtokenizer: symlink its config YAML and checkpoint into DIR "
                             "(a recipe's exp/wavtokenizer/, where codec_wavtokenizer.yaml looks)")
    return parser.parse_args(argv)


def link_wavtokenizer(repo_dir: Path, target: Path) -> None:
    """Symlink the two WavTokenizer files the codec config names into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for name in WAVTOKENIZER_FILES:
        src = repo_dir / name
        if not src.is_file():
            raise SystemExit(f"error: {src} is not in the downloaded {WAVTOKENIZER} snapshot")
        link = target / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(src.resolve())
        print(f"  {link} -> {src.resolve()}")


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
    if args.link_into is not None:
        if WAVTOKENIZER not in done:
            raise SystemExit("error: --link-into goes with the wavtokenizer download")
        link_wavtokenizer(Path(done[WAVTOKENIZER]), args.link_into)
    return 0


if __name__ == "__main__":
    sys.exit(main())
