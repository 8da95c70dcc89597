"""Read or resolve a YAML config for recipe scripts (includes merged, dotted overrides applied).

    python -m dualspeech.bin.resolve_config CONF --get codec.name   # prints the value ("" if absent)
    python -m dualspeech.bin.resolve_config CONF --set codec.checkpoint=X --out exp/codec.yaml
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dualspeech.config import apply_overrides, load_yaml, save_config


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.resolve_config", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("conf", help="YAML config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="set a value (the key may be new), repeatable")
    p.add_argument("--get", metavar="KEY", help="print this dotted key's value")
    p.add_argument("--out", type=Path, help="write the resolved config here (atomically)")
    args = p.parse_args(argv)
    cfg = apply_overrides(load_yaml(args.conf), args.overrides, allow_new=True)
    if args.get:
        node = cfg
        for key in args.get.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        print("" if node is None else node)
    if args.out:
        save_config(cfg, args.out.parent, args.out.name)
    if not (args.get or args.out):
        sys.exit("nothing to do: give --get KEY and/or --out FILE")


if __name__ == "__main__":
    main()
