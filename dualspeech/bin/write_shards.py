"""Write the training shards (recipe stage 5): render + tokenize every task example once.

    python -m dualspeech.bin.write_shards --conf egs/mini/conf/dualspeechlm_debug.yaml \
        --data-root dump --sets mini:train mini:dev [--shard-size 1000] [--force]

For every set (``corpus:part``), the checked task examples ``<data-root>/tasks/<corpus>_<task>_
<part>.jsonl.gz`` are joined with their speech cuts (``<data-root>/cuts/...``: USTokens, codec
tokens, speaker embeddings), rendered with the prompt templates and the backbone tokenizer of
``--conf`` (the model's training config) and written to ``<data-root>/shards/<corpus>_<part>/``
(layout: ``dualspeech.data.shards``). Training then reads only what a batch needs; the
fingerprint of the tokenizer and templates is recorded, so training with another tokenizer stops
with an error. A killed run resumes at the first unfinished shard; changed inputs or settings
are an error unless ``--force``. Each set's ``index.json`` records the identities of the
tokenizers that made its ids (``token_identities``); sets that disagree are refused
(``dualspeech.data.token_identity``). Examples whose speech lacks a needed field are dropped and
counted (stage 5 runs check_task_data first, so normally none are). The work is done by
``dualspeech.data.shard_writing``; this command parses the arguments only.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dualspeech.config import add_config_args, config_from_args
from dualspeech.data import token_identity
from dualspeech.data.shard_writing import write_set
from dualspeech.data.streaming import shard_root
from dualspeech.data.tasks import parse_set
from dualspeech.models.dualspeechlm import build_templates
from dualspeech.utils.logs import setup_logging

log = logging.getLogger("dualspeech.write_shards")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.write_shards", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--data-root", type=Path, required=True, help="dir with tasks/ and cuts/")
    p.add_argument("--sets", nargs="+", required=True, metavar="CORPUS:PART")
    p.add_argument("--out", type=Path, default=None, help="default: <data-root>/shards")
    p.add_argument("--shard-size", type=int, default=1000, help="examples per shard")
    p.add_argument("--force", action="store_true", help="rewrite shards written before")
    p.add_argument("--nj", type=int, default=1, help="shards written in parallel (processes)")
    p.add_argument("--token-meta", nargs="+", metavar="META_JSON",
                   help="meta.json files of the token extraction: sizes a config leaves out are "
                        "filled as bin.train does, so the vocabulary is the one it trains with")
    args, other = p.parse_known_args(argv)   # the recipe passes its train args (--set ...)
    setup_logging()
    if other:
        log.info("ignoring arguments that only training uses: %s", " ".join(other))
    cfg = config_from_args(args)
    if args.token_meta:
        from dualspeech.models.token_sizes import apply_token_sizes, sizes_from_meta

        apply_token_sizes(cfg, sizes_from_meta(args.token_meta))
    templates, acoustic_field = build_templates(cfg)
    out = args.out or shard_root(args.data_root)
    result, identities = {}, {}
    for name in args.sets:
        try:
            corpus, part = parse_set(name)
        except ValueError as e:
            raise SystemExit(f"--sets: {e}") from None
        try:
            result[name] = write_set(templates, acoustic_field, args.data_root, corpus, part, out,
                                     args.shard_size, args.force, args.nj, identities)
        except (FileNotFoundError, token_identity.TokenIdentityError) as e:
            raise SystemExit(f"error: {e}") from e
        log.info("%s: %s", name, ", ".join(f"{t} {n}" for t, n in result[name].items()))
    return result


if __name__ == "__main__":
    main()
