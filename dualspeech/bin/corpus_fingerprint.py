"""Print a generated corpus's fingerprint and warn when it differs from a reference.

    python -m dualspeech.bin.corpus_fingerprint --corpus-dir db/mini_default \\
        --reference conf/corpus_fingerprint_default.json

The fingerprint (CORPUS_DIR/fingerprint.json, written by the corpus generator) hashes the audio
and texts and lists the synthesiser package versions (docs/data.md, "Corpus fingerprint"). The
pipeline runs this after stage 0 when the recipe names a reference (--reference-fingerprint):
a differing corpus is a warning naming what differs (the audio hash, the text hash, which
package versions), not an error, since the run itself is still valid. --strict makes it exit 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dualspeech.data.fingerprint import FILENAME, compare_message, describe, read_fingerprint


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.corpus_fingerprint",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus-dir", required=True, type=Path,
                   help=f"the generated corpus (holds {FILENAME})")
    p.add_argument("--reference", type=Path,
                   help="a committed fingerprint to compare with (e.g. the recipe's "
                        "conf/corpus_fingerprint_<size>.json)")
    p.add_argument("--strict", action="store_true", help="exit 1 when the corpus differs")
    args = p.parse_args(argv)
    path = args.corpus_dir / FILENAME
    if not path.is_file():
        sys.exit(f"ERROR: no {path}: the corpus generator writes it at the end of stage 0 "
                 "(re-run stage 0); corpora that are not generated have no fingerprint")
    try:
        fingerprint = read_fingerprint(path)
        reference = read_fingerprint(args.reference) if args.reference else None
    except ValueError as e:
        sys.exit(f"ERROR: {e}")
    print(f"corpus fingerprint of {args.corpus_dir}: {describe(fingerprint)}")
    if reference is None:
        return
    warning = compare_message(fingerprint, reference, str(args.reference))
    if warning is None:
        print(f"the corpus matches the reference {args.reference}")
        return
    print(f"WARNING: {warning}", file=sys.stderr)
    if args.strict:
        sys.exit(1)


if __name__ == "__main__":
    main()
