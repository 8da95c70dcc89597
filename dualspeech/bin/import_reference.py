"""Convert the official reference code's checkpoints (lavendery/UUG) into this project's files.

  python -m dualspeech.bin.import_reference ustokenizer \\
      --checkpoint exp/tokenizer_ckpt/checkpoint_best.pth --whisper whisper:medium \\
      --out exp/ustokenizer_reference/final.pt

ustokenizer: its USTokenizer ``checkpoint_*.pth`` (the trainable state under ``model``; frozen
Whisper / LLM keys are absent or dropped) -> a tokenizer file for ``extract_ustokens``, with
``ustokenizer.arch: repcodec`` and ``pad_to_30s: true``. Strict: a missing, unexpected or
mis-shaped key, or a ``codec_config`` other than the reference's, is an error naming it.
The written file is loaded back before the command reports success.

The DualSpeechLM checkpoints (``checkpoint-merged-N``, ``checkpoint-N``) are not converted yet
(docs/model.md, "Differences from the reference code").
"""
from __future__ import annotations

import argparse

from dualspeech.utils.logs import setup_logging


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.import_reference",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kind", required=True)
    tok = sub.add_parser("ustokenizer", help="a reference USTokenizer checkpoint_*.pth")
    tok.add_argument("--checkpoint", required=True, help="the reference's checkpoint_*.pth")
    tok.add_argument("--whisper", default="whisper:medium",
                     help="Whisper it was trained on (dualspeech.pretrained spec; default "
                          "whisper:medium, the reference's whisper-medium)")
    tok.add_argument("--out", required=True, help="tokenizer file to write (final.pt)")
    args = p.parse_args(argv)
    setup_logging()

    import logging

    from dualspeech.tokenizers.ustokenizer.checkpoint import load_tokenizer
    from dualspeech.tokenizers.ustokenizer.reference import import_ustokenizer

    path = import_ustokenizer(args.checkpoint, args.whisper, args.out)
    loaded = load_tokenizer(path)
    logging.getLogger(__name__).info("wrote %s: repcodec tokenizer, %d codes of dim %d", path,
                                     loaded.vq.codebook_size, loaded.vq.dim)


if __name__ == "__main__":
    main()
