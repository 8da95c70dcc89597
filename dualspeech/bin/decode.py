"""Decode test sets of all 8 tasks with a trained DualSpeechLM: ``python -m dualspeech.bin.decode``.

For every ``--sources corpus:part`` and task (``--tasks``, default all 8) whose task manifest
``<data-root>/tasks/<corpus>_<task>_<part>.jsonl.gz`` exists, writes
``<out-dir>/<corpus>_<task>_<part>/`` with ``hyp.jsonl`` (one record per cut id: status, text
or wav path, references), ``wav/`` and ``prompt/`` (generation tasks), ``text``,
``stats.json`` and ``decode_config.yaml``. Re-running skips finished ids; ``--shard k
--num-shards n`` decodes every n-th example (run n jobs; the last one to finish merges).
``--set +decode.control=NAME`` writes a control decode instead (a name of CONTROLS in
dualspeech/inference/config.py; dualspeech/inference/controls.py) for the tasks it applies to.
See docs/inference.md.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from dualspeech.config import add_config_args, build, config_from_args, load_yaml
from dualspeech.data import token_identity
from dualspeech.data.tasks import TASKS, parse_set, speech_manifest_name, task_manifest_name
from dualspeech.inference.config import DecodeConfig
from dualspeech.inference.controls import control_tasks
from dualspeech.utils.logs import setup_logging

log = logging.getLogger("dualspeech.decode")


def check_test_tokens(model_path: str, root: Path, sets: list[tuple[str, str]]) -> None:
    """The test cuts' ids must come from the tokenizers the model was trained on."""
    trained, where = token_identity.read_for_model(model_path)
    if where is None:
        log.warning("%s records no token identities (trained before they were recorded): the "
                    "test tokens cannot be checked against it", model_path)
        return
    from lhotse import CutSet

    for corpus, part in sets:
        path = root / "cuts" / speech_manifest_name(corpus, part)
        if path.is_file():
            token_identity.check(
                trained, f"the model ({where})",
                token_identity.cut_identities(CutSet.from_file(path), str(path)), str(path),
                "re-extract the test tokens with the model's checkpoints, or retrain on these: "
                "./run.sh --stage 3 (stages 4-6 follow)")


def build_decoder(model_path: str, cfg: DecodeConfig, codec_conf: Path | None = None):
    """Model + codec + dataset settings -> a DecodeRunner. Codec: ``decode.codec``, else the
    ``codec`` section of the model config (a model whose speech output is not the acoustic codec's,
    e.g. Baseline-Semantic's units -> unit vocoder), else ``--codec-conf`` (the recipe's stage-4
    codec, a YAML with a ``codec`` section)."""
    from dualspeech.data.dataset import DataConfig
    from dualspeech.inference.controls import make_runner
    from dualspeech.models.io import load_model

    model = load_model(model_path, device=cfg.device)
    from_model = not cfg.codec and bool(model.full_config.get("codec"))
    codec_cfg = cfg.codec or model.full_config.get("codec") \
        or (load_yaml(codec_conf).get("codec") if codec_conf else None)
    codec = None
    if codec_cfg:
        from dualspeech.tokenizers.codecs import build_codec

        try:
            codec = build_codec(codec_cfg)
        except (OSError, ValueError, KeyError, RuntimeError) as e:   # e.g. an untrained vocoder
            log.error("codec %r cannot be built (%s)", codec_cfg.get("name"), e)
    if codec is not None and not from_model and model.acoustic_spec() is not None:
        # the codec turns the model's generated acoustic ids into speech: it must be theirs
        trained, where = token_identity.read_for_model(model_path)
        token_identity.check(
            trained, f"the model ({where})", {"acoustic_tokens": codec.identity, **(
                {"speaker_embedding": codec.speaker_identity} if codec.speaker_identity else {})},
            f"the codec of {codec_conf or 'decode.codec'}",
            "decode with the codec the model was trained on (point --codec-conf at it), or "
            "retrain on this codec's ids: ./run.sh --stage 4 (re-extracts; stages 5-6 follow)")
    # without a usable codec the generation test sets fail alone (status no_output_path)
    data_cfg = build(DataConfig, model.full_config.get("data"), "data")
    if cfg.max_len is not None:
        data_cfg.max_len = cfg.max_len
    return make_runner(model, cfg, codec, data_cfg)   # the model's decode, or decode.control's


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m dualspeech.bin.decode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--model", required=True,
                        help="exp dir, checkpoints/step-N dir, exported or merged model dir")
    parser.add_argument("--data-root", required=True, type=Path, help="dir with tasks/ and cuts/")
    parser.add_argument("--sources", nargs="+", required=True, metavar="CORPUS:PART",
                        help="test splits, e.g. mini:test librispeech:test-clean")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS),
                        help="tasks to decode where a manifest exists (default: all 8)")
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--codec-conf", type=Path,
                        help="YAML whose codec section decodes acoustic tokens (generation tasks)")
    parser.add_argument("--shard", type=int, default=0, help="this job's shard index")
    parser.add_argument("--num-shards", type=int, default=1, help="number of shards (jobs)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    raw = config_from_args(args)
    cfg = build(DecodeConfig, raw.get("decode"), "decode")
    jobs = []
    tasks = control_tasks(cfg.control, args.tasks)
    if cfg.control:
        log.info("decode.control=%s: decoding only %s", cfg.control, tasks)
    for source in args.sources:
        try:
            corpus, part = parse_set(source)
        except ValueError as e:
            parser.error(f"--sources: {e}")
        for task in tasks:
            if (args.data_root / "tasks" / task_manifest_name(corpus, task, part)).is_file():
                jobs.append((corpus, part, task))
    if not jobs and cfg.control:
        log.info("decode.control=%s applies to none of the test sets found; nothing to do",
                 cfg.control)
        return {}
    if not jobs:
        parser.error(f"no task manifests for {args.sources} under {args.data_root}/tasks")
    try:
        check_test_tokens(args.model, args.data_root, sorted({(c, p) for c, p, _ in jobs}))
        decoder = build_decoder(args.model, cfg, args.codec_conf)
    except token_identity.TokenIdentityError as e:
        raise SystemExit(f"error: {e}") from e
    codec = decoder.generator.codec
    resolved = {**raw, "model_path": str(args.model), "num_shards": args.num_shards,
                "codec_conf": str(args.codec_conf) if args.codec_conf else None,
                "codec_identity": codec.identity if codec is not None else None}
    summary = {}
    for corpus, part, task in jobs:
        counts = decoder.decode(args.data_root, corpus, part, task, args.out_dir, args.shard,
                                args.num_shards, resolved)
        summary[f"{corpus}_{task}_{part}"] = counts
        log.info("%s_%s_%s shard %d/%d: %s", corpus, task, part, args.shard, args.num_shards,
                 counts)
    return summary


if __name__ == "__main__":
    main()
