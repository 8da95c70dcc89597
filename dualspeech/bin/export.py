"""Export a trained DualSpeechLM as a self-contained model dir (what ``infer`` / ``serve`` load).

    python -m dualspeech.bin.export --model exp/mini/dualspeechlm --out exp/mini/dualspeechlm/model \
        --ustokenizer exp/mini/ustokenizer/final.pt --codec-conf exp/mini/codec_melvq/codec.yaml \
        --speaker-conf conf/speaker_resemblyzer.yaml --decode-conf conf/decode_mini.yaml \
        [--token-meta dump/*/mini.train/meta.json] [--merge]

``--model`` is anything ``models.io.load_model`` takes (exp dir, checkpoints/step-N, an exported
or merged dir). ``--out`` may be that exported dir itself (recipe stage 6 adds the parts in
place). The dir gets the USTokenizer that made the input tokens, the codec and speaker encoder
(local files copied in, pip-shipped weights named by content hash), the decode defaults and
model.json with the sha256 of every file; loading checks them (docs/inference.md).
``--token-meta``: the extraction meta.json files of the training data; each part must be the
extractor they name. ``--merge``: write the LoRA merged into the LLM (bin/merge) instead.
"""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from dualspeech.utils.logs import setup_logging

log = logging.getLogger("dualspeech.export")


def export(model: Path, out: Path, ustokenizer: Path | None = None, codec_conf: Path | None = None,
           speaker_conf: Path | None = None, decode_conf: Path | None = None,
           token_meta: list[Path] | None = None, merge_lora: bool = False) -> dict:
    from dualspeech.config import load_yaml
    from dualspeech.inference.model_dir import write_parts

    exported = model / "model" if (model / "model" / "extra.safetensors").is_file() else model
    if merge_lora:
        from dualspeech.bin.merge import merge

        merge(model, out)
    elif out.resolve() == exported.resolve():
        pass                                              # add the parts in place
    elif (out / "config.yaml").exists():
        raise FileExistsError(f"{out} already holds a model; pass it as --model to add the "
                              "parts in place, or choose another --out")
    elif (exported / "extra.safetensors").is_file() and (exported / "config.yaml").is_file():
        shutil.copytree(exported, out, dirs_exist_ok=True)   # an exported or merged dir
    else:
        from dualspeech.models.io import export_model, load_model

        export_model(load_model(model), out)

    def section(path: Path | None, name: str):
        if path is None:
            return None
        cfg = load_yaml(path)
        if not cfg.get(name):
            raise ValueError(f"{path} has no {name} section")
        return cfg[name]

    return write_parts(out, ustokenizer=ustokenizer, codec=section(codec_conf, "codec"),
                       speaker=section(speaker_conf, "speaker"),
                       decode=section(decode_conf, "decode"), token_meta=token_meta)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path,
                   help="exp dir, checkpoints/step-N dir, exported or merged model dir")
    p.add_argument("--out", required=True, type=Path, help="the model dir to write (or --model)")
    p.add_argument("--ustokenizer", type=Path, help="USTokenizer final.pt of the input tokens")
    p.add_argument("--codec-conf", type=Path, help="YAML with the codec section of stage 4")
    p.add_argument("--speaker-conf", type=Path, help="YAML with the speaker section of stage 4")
    p.add_argument("--decode-conf", type=Path, help="YAML with the decode defaults")
    p.add_argument("--token-meta", type=Path, nargs="+", metavar="META_JSON",
                   help="extraction meta.json files of the training data (checked against)")
    p.add_argument("--merge", action="store_true", help="merge LoRA into the LLM (bin/merge)")
    args = p.parse_args(argv)
    setup_logging()
    export(args.model, args.out, args.ustokenizer, args.codec_conf, args.speaker_conf,
           args.decode_conf, args.token_meta, args.merge)


if __name__ == "__main__":
    main()
