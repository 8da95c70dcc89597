"""Convert the official reference code's checkpoints (lavendery/UUG) into this project's files.

  python -m dualspeech.bin.import_reference ustokenizer \\
      --checkpoint exp/tokenizer_ckpt/checkpoint_best.pth --whisper whisper:medium \\
      --out exp/ustokenizer_reference/final.pt

ustokenizer: its USTokenizer ``checkpoint_*.pth`` (the trainable state under ``model``; frozen
Whisper / LLM keys are absent or dropped) -> a tokenizer file for ``extract_ustokens``, with
``ustokenizer.arch: repcodec`` and ``pad_to_30s: true``. Strict: a missing, unexpected or
mis-shaped key, or a ``codec_config`` other than the reference's, is an error naming it.
The written file is loaded back before the command reports success.

  python -m dualspeech.bin.import_reference dualspeechlm \\
      --checkpoint exp/DualSpeechLM/checkpoint-merged-60000 \\
      --config conf/dualspeechlm_phi35.yaml --out exp/dualspeechlm_reference/model

dualspeechlm: its merged ``checkpoint-merged-N`` dir, or its trainer's ``checkpoint-N`` (peft
``adapter_model`` with ``base_model.model.`` keys; the LoRA pairs are merged into the base LLM,
``--base`` or the config's ``model.llm``) -> a merged model dir (``llm/``, ``tokenizer/``,
``extra.safetensors``, ``config.yaml``) for ``decode`` / ``export``. The vocabulary rows are
permuted into our order (codes first, begin / end of audio last); ``--reference-tokenizer``
looks the reference's ids up in its extended tokenizer instead of assuming its order
(``<audio>``, ``</audio>``, ``<a_0>``...). The config's AcousticGPT gets the reference's sizes
and computation (tanh GELU, no dropout, no speaker bias, the head as stored). Strict in the
same way; the written dir is loaded back before the command reports success.
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
    lm = sub.add_parser("dualspeechlm", help="a reference checkpoint-merged-N or checkpoint-N dir")
    lm.add_argument("--checkpoint", required=True,
                    help="the reference's checkpoint-merged-N dir or trainer checkpoint-N dir")
    lm.add_argument("--config", required=True,
                    help="our DualSpeechLM config (e.g. egs/multitask/conf/dualspeechlm_phi35.yaml): "
                         "base LLM, speech vocabulary, templates, AcousticGPT head count")
    lm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override (repeatable)")
    lm.add_argument("--base", help="base LLM of a checkpoint-N (dualspeech.pretrained spec or "
                                   "HF dir; default: the config's model.llm)")
    lm.add_argument("--reference-tokenizer",
                    help="the reference's extended tokenizer dir (its "
                         "Phi-3.5-mini-instruct-tokenizer-audio-1024), to look the speech ids up")
    lm.add_argument("--out", required=True, help="model dir to write")
    args = p.parse_args(argv)
    setup_logging()

    import logging

    if args.kind == "dualspeechlm":
        from dualspeech.config import load_config
        from dualspeech.models.reference import import_dualspeechlm

        out = import_dualspeechlm(args.checkpoint, load_config(args.config, args.set), args.out,
                                  base=args.base, tokenizer=args.reference_tokenizer)
        logging.getLogger(__name__).info("wrote %s (load it with dualspeech.models.io.load_model; "
                                         "make it self-contained with bin.export)", out)
        return

    from dualspeech.tokenizers.ustokenizer.checkpoint import load_tokenizer
    from dualspeech.tokenizers.ustokenizer.reference import import_ustokenizer

    path = import_ustokenizer(args.checkpoint, args.whisper, args.out)
    loaded = load_tokenizer(path)
    logging.getLogger(__name__).info("wrote %s: repcodec tokenizer, %d codes of dim %d", path,
                                     loaded.vq.codebook_size, loaded.vq.dim)


if __name__ == "__main__":
    main()
