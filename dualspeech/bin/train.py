"""Train DualSpeechLM (any variant) on multi-task token data with the shared trainer.

    python -m dualspeech.bin.train --conf egs/mini/conf/dualspeechlm_debug.yaml --exp-dir exp/lm \
        [--data-root data] [--train mini:train] [--valid mini:dev] [--set trainer.max_steps=50]
    accelerate launch --config_file egs/multitask/conf/launch/ddp.yaml \
        -m dualspeech.bin.train --conf ... --exp-dir ...          # DDP / FSDP / DeepSpeed ZeRO-2

Training and validation data are the shards recipe stage 5 writes
(``python -m dualspeech.bin.write_shards``, into ``<data.root>/shards``), streamed per batch.
The exp dir gets config.yaml, tokenizer/ (the extended vocabulary), checkpoints/step-N/
(trainable weights, optimizer, scheduler, data position, RNG: an interrupted run resumes
exactly), log/metrics.csv + tensorboard/, model/ (LoRA adapter + extra modules + tokenizer +
config, for decoding) and loss_curves.png. ``token_identities.json`` (in the exp dir and in
model/) records the tokenizers that made the training ids, from the shards' index; decoding
refuses test data or a codec of other tokenizers (``dualspeech.data.token_identity``).
"""
from __future__ import annotations

import argparse
import csv
import logging
from collections import defaultdict
from pathlib import Path

import torch

from dualspeech.config import add_config_args, build, config_from_args, save_config
from dualspeech.data import token_identity
from dualspeech.data.dataset import DataConfig
from dualspeech.data.sampler import TaskBatchSampler
from dualspeech.data.streaming import ShardDataset
from dualspeech.data.tasks import TASKS
from dualspeech.data.vocab import SpeechVocab
from dualspeech.models.dualspeechlm import DualSpeechLM
from dualspeech.models.io import export_model
from dualspeech.models.token_sizes import apply_token_sizes, sizes_from_meta
from dualspeech.utils.logs import setup_logging

log = logging.getLogger("dualspeech.train")
LOSS_KEYS = (("text_ce", "has_text"), ("semantic_ce", "has_semantic"),
             ("acoustic_ce", "has_acoustic"))
VALID_METRICS = ("text_ce", "semantic_ce", "semantic_acc", "acoustic_ce", "acoustic_acc")


def valid_keys(dataset, has_acoustic: bool) -> list[str]:
    keys = []
    for task in sorted(dataset.lengths):
        if TASKS[task].kind == "understanding":
            keys.append(f"{task}/text_ce")
        else:   # teacher-forced accuracies tell a user whether generation learns at all
            keys += [f"{task}/semantic_ce", f"{task}/semantic_acc"]
            keys += [f"{task}/acoustic_ce", f"{task}/acoustic_acc"] if has_acoustic else []
    return keys


def make_valid_fn(dataset, cfg: DataConfig):
    """Per-task validation losses on the first ``data.valid_max_examples`` examples of each task,
    split over ranks, sums reduced across them. ``dataset``: a ShardDataset or TaskDataset
    (anything with ``lengths`` per task and ``dataset[[(task, i), ...]]`` batches)."""
    from dualspeech.training import to_device

    def valid_fn(model, accelerator) -> dict[str, float]:
        keys = valid_keys(dataset, model.acoustic_gpt is not None)
        sums = torch.zeros(len(keys), 2, dtype=torch.float64, device=accelerator.device)
        rank, world = accelerator.process_index, accelerator.num_processes
        for task in sorted(dataset.lengths):
            shard = list(range(min(len(dataset.lengths[task]), cfg.valid_max_examples)))[rank::world]
            for i in range(0, len(shard), cfg.valid_batch_size):
                chunk = [(task, j) for j in shard[i:i + cfg.valid_batch_size]]
                out = model(to_device(dataset[chunk], accelerator.device))
                for name in VALID_METRICS:
                    key = f"{task}/{name}"
                    if key in keys:
                        sums[keys.index(key)] += torch.tensor(
                            [float(out[name]) * len(chunk), len(chunk)], device=sums.device)
        if world > 1:
            sums = accelerator.reduce(sums, reduction="sum")
        return {k: float(s / max(n, 1)) for k, (s, n) in zip(keys, sums.tolist())}

    return valid_fn


def plot_losses(exp_dir: Path) -> Path | None:
    """loss_curves.png from log/metrics.csv: train losses (per kind), per-task valid losses and
    the generation tasks' teacher-forced accuracies."""
    path = exp_dir / "log" / "metrics.csv"
    if not path.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = defaultdict(dict)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows[(r["split"], int(r["step"]))][r["name"]] = float(r["value"])
    fig, (ax_t, ax_v, ax_a) = plt.subplots(1, 3, figsize=(17, 4.5))
    train = sorted((s, v) for (split, s), v in rows.items() if split == "train")
    for name, has in LOSS_KEYS:   # a mean over batches that had this kind of target
        pts = [(s, v[name] / v[has]) for s, v in train if v.get(has, 0) > 0 and name in v]
        if pts:
            ax_t.plot(*zip(*pts), label=name)
    ax_t.plot([s for s, _ in train], [v["loss"] for _, v in train], "k--", label="loss")
    valid = sorted((s, v) for (split, s), v in rows.items() if split == "valid")
    for key in sorted({k for _, v in valid for k in v}):
        pts = [(s, v[key]) for s, v in valid if key in v]
        (ax_a if key.endswith("_acc") else ax_v).plot(*zip(*pts), marker="o", label=key)
    for ax, title, ylabel in ((ax_t, "train", "cross-entropy"),
                              (ax_v, "valid (per task)", "cross-entropy"),
                              (ax_a, "valid teacher-forced accuracy", "top-1 accuracy")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out = exp_dir / "loss_curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def shard_identities(*datasets) -> dict[str, str]:
    """The tokenizers that made the training ids (recorded by stage 5 in each set's index.json);
    the train and valid sets must agree."""
    named = {str(s.path): s.index.get("token_identities") or {}
             for ds in datasets if ds is not None for s in ds.sets}
    try:
        return token_identity.merge(named, "re-extract the tokens of every set with the same "
                                    "checkpoints (./run.sh --stage 3 --force true)")
    except token_identity.TokenIdentityError as e:
        raise SystemExit(f"error: {e}") from e


def check_speech_init(cfg: dict, identities: dict[str, str]) -> None:
    """Speech rows initialised from a USTokenizer must come from the one that made the ids."""
    init = (cfg.get("model") or {}).get("speech_init") or {}
    if init.get("method") != "ustokenizer" or not init.get("ustokenizer_ckpt") \
            or not Path(init["ustokenizer_ckpt"]).is_file():
        return
    from dualspeech.utils.io import short_hash

    try:
        token_identity.check(
            {"ustokens": f"ustokenizer:{short_hash(init['ustokenizer_ckpt'])}"},
            f"model.speech_init.ustokenizer_ckpt={init['ustokenizer_ckpt']}", identities,
            "the training shards' index", "initialise from the USTokenizer that extracted the tokens, or "
            "re-extract with this one (./run.sh --stage 3 --force true)")
    except token_identity.TokenIdentityError as e:
        raise SystemExit(f"error: {e}") from e


def build_model(cfg: dict, exp_dir: Path, is_main: bool) -> DualSpeechLM:
    """The model; the extended tokenizer is saved once and reused on resume (same ids)."""
    tok_dir = exp_dir / "tokenizer"
    vocab = SpeechVocab.load(tok_dir) if (tok_dir / "speech_vocab.json").exists() else None
    model = DualSpeechLM.from_config(cfg, vocab)
    if vocab is None and is_main:
        model.vocab.save(tok_dir)
    return model


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--exp-dir", required=True, type=Path, help="experiment directory")
    p.add_argument("--data-root", help="overrides data.root (holds shards/, written by stage 5)")
    p.add_argument("--train", nargs="+", help="overrides data.train (corpus:part ...)")
    p.add_argument("--valid", nargs="+", help="overrides data.valid (corpus:part ...)")
    p.add_argument("--token-meta", nargs="+", metavar="META_JSON",
                   help="meta.json files of the token extraction (recipe stages 3-4): their sizes "
                        "set model.speech.num_tokens / acoustic_gpt.n_codes / spk_dim (a config "
                        "value that disagrees is an error)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    setup_logging()
    args = parse_args(argv)
    cfg = config_from_args(args)
    data = cfg.setdefault("data", {})
    for key, value in (("root", args.data_root), ("train", args.train), ("valid", args.valid)):
        if value:
            data[key] = value
    if args.token_meta:
        for key, size in apply_token_sizes(cfg, sizes_from_meta(args.token_meta)).items():
            log.info("%s=%d (from the extracted tokens' meta.json)", key, size)
    from dualspeech.training import Trainer, TrainerConfig

    trainer = Trainer(build(TrainerConfig, cfg.get("trainer"), "trainer"), args.exp_dir)
    if trainer.is_main:
        save_config(cfg, args.exp_dir)
    data_cfg = build(DataConfig, cfg.get("data"), "data")
    model = build_model(cfg, args.exp_dir, trainer.is_main)
    # training data streams from the stage-5 shards (python -m dualspeech.bin.write_shards)
    train, valid = (ShardDataset(data_cfg.root, sources, model.templates, data_cfg.max_len,
                                 model.acoustic_spec()) if sources else None
                    for sources in (data_cfg.train, data_cfg.valid))
    identities = shard_identities(train, valid)
    check_speech_init(cfg, identities)
    acc = trainer.accelerator
    sampler = TaskBatchSampler(train.lengths, data_cfg.sampler, rank=acc.process_index,
                               world_size=acc.num_processes, groups=train.groups,
                               batches_per_step=trainer.cfg.grad_accum)
    for phase in data_cfg.sampler.curriculum:
        log.info("curriculum: %d steps of %s", phase["steps"],
                 ", ".join(f"{t} {w:g}" for t, w in phase["weights"].items() if w > 0))
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("trainable parameters: %.2fM; %d training examples (%s)", n_train / 1e6, len(train),
             ", ".join(f"{t} {len(v)}" for t, v in train.lengths.items()))
    model = trainer.fit(model, train, sampler,
                        make_valid_fn(valid, data_cfg) if valid is not None else None)
    if trainer.is_main:
        export_model(model, args.exp_dir / "model")
        for d in (args.exp_dir, args.exp_dir / "model"):   # what decoding checks its inputs against
            token_identity.write(d, identities)
        png = plot_losses(args.exp_dir)
        log.info("exported %s; loss curves %s", args.exp_dir / "model", png)
    trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
