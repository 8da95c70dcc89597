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
counted (stage 5 runs check_task_data first, so normally none are).
"""
from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from dualspeech.config import add_config_args, build, config_from_args
from dualspeech.data import token_identity
from dualspeech.data.dataset import load_tokens
from dualspeech.data.shards import ShardWriter, encoding_fingerprint, set_dir
from dualspeech.data.streaming import shard_root
from dualspeech.data.tasks import TASKS, speech_cut_ids, speech_manifest_name, task_manifest_name
from dualspeech.utils.logs import setup_logging

log = logging.getLogger("dualspeech.write_shards")


def build_templates(cfg: dict):
    """The model's templates with its extended tokenizer, without loading the LLM weights."""
    from transformers import AutoTokenizer

    from dualspeech.data.templates import TaskTemplates, TemplateConfig
    from dualspeech.data.vocab import SpeechVocab
    from dualspeech.models.dualspeechlm import ModelConfig
    from dualspeech.pretrained import resolve

    model_cfg = build(ModelConfig, cfg.get("model"), "model")
    tok = AutoTokenizer.from_pretrained(resolve(model_cfg.llm), local_files_only=True)
    vocab = SpeechVocab.extend(tok, model_cfg.speech)
    acoustic_field = model_cfg.acoustic_gpt.field if model_cfg.acoustic_gpt else "acoustic_tokens"
    return TaskTemplates(build(TemplateConfig, cfg.get("templates"), "templates"), vocab), acoustic_field


def content_sha256(path: Path) -> str:
    """sha256 of a manifest's content (decompressed: a rewritten .gz with the same lines but a
    new gzip timestamp is the same input, so a resumed stage 5 keeps its shards)."""
    import gzip
    import hashlib

    h = hashlib.sha256()
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def missing_field(task: str, speech: dict, field: str, acoustic_field: str) -> str | None:
    spec = TASKS[task]
    need = [(r, field) for r in spec.input_speech]
    if spec.output_speech:
        need += [(spec.output_speech, field), (spec.output_speech, acoustic_field),
                 ("speaker_ref", "speaker_embedding")]
    for role, name in need:
        if role not in speech:
            return f"no {role} speech cut"
        if not speech[role].has_custom(name):
            return f"no {name} on {role}"
    return None


def encode_example(templates, acoustic_field: str, task: str, cut, speech: dict) -> dict:
    """One shard record from a task-example cut and its speech cuts (role -> cut)."""
    spec, field = TASKS[task], templates.vocab.cfg.field
    out = spec.output_speech
    return render_record(
        templates, task, cut, {r: load_tokens(speech[r], field) for r in spec.input_speech},
        load_tokens(speech[out], field) if out else None,
        load_tokens(speech[out], acoustic_field) if out else None,
        speech["speaker_ref"].load_custom("speaker_embedding") if out else None)


def render_record(templates, task: str, cut, inputs: dict, target=None, codes=None,
                  speaker=None) -> dict:
    """One shard record: rendered ids (+ codec ids and speaker embedding of the output speech)."""
    enc = templates.encode(task, cut.custom, inputs, target)
    rec = {"cut": cut, "input_ids": np.asarray(enc.input_ids, dtype=np.int32),
           "prompt_len": enc.prompt_len, "target_span": enc.target_span}
    if TASKS[task].output_speech:
        codes = np.asarray(codes)
        rec["acoustic_tokens"] = codes.astype(np.int16 if codes.max(initial=0) < 2 ** 15 else np.int32)
        rec["speaker_embedding"] = np.asarray(speaker, dtype=np.float32).reshape(-1)
    return rec


def write_set(templates, acoustic_field: str, data_root: Path, corpus: str, part: str,
              out_root: Path, shard_size: int, force: bool, nj: int = 1,
              identities: dict[str, str] | None = None) -> dict[str, int]:
    """Write one set's shards; returns {task: examples written}. ``identities``: the token
    identities of the sets written before ({} at first): this set's must agree, and are added."""
    from lhotse import CutSet
    from lhotse.features.io import close_cached_file_handles

    cuts_path = data_root / "cuts" / speech_manifest_name(corpus, part)
    task_paths = {t: data_root / "tasks" / task_manifest_name(corpus, t, part) for t in TASKS}
    task_paths = {t: p for t, p in task_paths.items() if p.is_file()}
    if not cuts_path.is_file():
        raise SystemExit(f"speech cuts {cuts_path} not found: run the earlier recipe stages")
    if not task_paths:
        raise SystemExit(f"no task manifests {corpus}_<task>_{part}.jsonl.gz in {data_root}/tasks")
    fingerprint = encoding_fingerprint(templates)
    inputs = {p.name: content_sha256(p) for p in [cuts_path, *task_paths.values()]}
    writer = ShardWriter(set_dir(out_root, corpus, part),
                         {"encoding": fingerprint, "inputs": inputs, "acoustic_field": acoustic_field},
                         shard_size, force)
    speech = {c.id: c for c in CutSet.from_file(cuts_path)}
    mine = token_identity.cut_identities(speech.values(), str(cuts_path))
    if identities is not None:       # every set of one model must come from the same tokenizers
        identities.update(token_identity.merge(
            {"the sets before": identities, f"{corpus}:{part} ({cuts_path})": mine},
            "re-extract the tokens of every set with the same checkpoints "
            "(./run.sh --stage 3 --force true)"))
    sources = sorted({str(c.custom.get(f"{f}_source")) for c in speech.values() if c.custom
                      for f in (templates.vocab.cfg.field, acoustic_field)
                      if c.custom.get(f"{f}_source")})
    counts, dropped, jobs = {}, Counter(), {}
    for task, path in task_paths.items():
        examples = []
        for cut in CutSet.from_file(path):
            roles = {r: speech.get(cid) for r, cid in speech_cut_ids(cut).items()}
            roles = {r: c for r, c in roles.items() if c is not None}
            why = missing_field(task, roles, templates.vocab.cfg.field, acoustic_field)
            if why:
                dropped[f"{task}: {why}"] += 1
                continue
            examples.append((cut, roles))
        counts[task] = len(examples)
        jobs[task] = examples

    def make_records(task: str, k: int) -> list[dict]:
        records = [encode_example(templates, acoustic_field, task, cut, roles)
                   for cut, roles in jobs[task][k * shard_size:(k + 1) * shard_size]]
        close_cached_file_handles()          # lhotse keeps every HDF5 file it read open
        return records

    units = [(t, k) for t, exs in jobs.items() for k in range(-(-len(exs) // shard_size))]
    n = writer.write_all(units, make_records, nj)
    log.info("%s:%s: wrote %d of %d shards (the others were complete)", corpus, part, n, len(units))
    for reason, n in sorted(dropped.items()):
        log.warning("%s:%s: dropped %d examples (%s)", corpus, part, n, reason)
    writer.finish(counts, fingerprint, {"speech_token_sources": sources, "token_identities": mine,
                                        "dropped": dict(dropped)})
    return counts


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
        corpus, sep, part = name.partition(":")
        if not sep or not corpus or not part:
            raise SystemExit(f"--sets entries look like corpus:part, got {name!r}")
        try:
            result[name] = write_set(templates, acoustic_field, args.data_root, corpus, part, out,
                                     args.shard_size, args.force, args.nj, identities)
        except token_identity.TokenIdentityError as e:
            raise SystemExit(f"error: {e}") from e
        log.info("%s: %s", name, ", ".join(f"{t} {n}" for t, n in result[name].items()))
    return result


if __name__ == "__main__":
    main()
