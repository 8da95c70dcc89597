"""Read or resolve a YAML config for recipe scripts (includes merged, dotted overrides applied).

The recipes read configs only through this entry point, so the shell never parses YAML:

    python -m dualspeech.bin.resolve_config CONF --get codec.name   # prints the value ("" if absent)
    python -m dualspeech.bin.resolve_config CONF --set model.x=1 --get model.x   # sees overrides
    python -m dualspeech.bin.resolve_config CONF --set codec.checkpoint=X --out exp/codec.yaml
    python -m dualspeech.bin.resolve_config CONF --files   # CONF and the files it includes
    python -m dualspeech.bin.resolve_config --choices decode.control   # the names a key accepts
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dualspeech.config import ConfigError, apply_overrides, config_files, load_yaml, save_config
from dualspeech.pretrained import PretrainedNotFound
from dualspeech.pretrained.assets import referenced_assets
from dualspeech.inference.config import CONTROLS

CHOICES = {"decode.control": CONTROLS}   # keys whose names the shell loops over


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.resolve_config", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("conf", nargs="?", help="YAML config (not needed by --choices)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="set a value (the key may be new), repeatable")
    p.add_argument("--get", metavar="KEY", help="print this dotted key's value")
    p.add_argument("--out", type=Path, help="write the resolved config here (atomically)")
    p.add_argument("--files", action="store_true",
                   help="print CONF, every file it includes and the shipped weights it names "
                        "(asset:...), one a line (a stage's inputs)")
    p.add_argument("--choices", metavar="KEY", help=f"print the values KEY accepts, one a line "
                                                    f"({', '.join(CHOICES)})")
    args = p.parse_args(argv)
    if args.choices:
        if args.choices not in CHOICES:
            sys.exit(f"--choices {args.choices}: known keys are {', '.join(CHOICES)}")
        print("\n".join(CHOICES[args.choices]))
    if not (args.get or args.out or args.files):
        if not args.choices:
            sys.exit("nothing to do: give --get KEY, --out FILE, --files or --choices KEY")
        return
    if args.conf is None:
        sys.exit("--get / --out / --files need the config file (CONF)")
    try:
        cfg = apply_overrides(load_yaml(args.conf), args.overrides, allow_new=True)
        if args.files:
            print("\n".join(config_files(args.conf) + [str(p) for p in referenced_assets(cfg)]))
    except (ConfigError, PretrainedNotFound) as e:
        sys.exit(f"{args.conf}: {e}")
    if args.get:
        node = cfg
        for key in args.get.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        print("" if node is None else node)
    if args.out:
        save_config(cfg, args.out.parent, args.out.name)


if __name__ == "__main__":
    main()
