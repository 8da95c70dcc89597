"""DualSpeechLM training end to end on a tiny token corpus (all 8 tasks, debug config):
losses go down, resume equals uninterrupted training, merged model equals the trained one."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dualspeech.bin.write_shards import main as write_shards
from dualspeech.testing.toy_corpus import write_toy_corpus

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "egs/mini/conf/dualspeechlm_debug.yaml"
STEPS = 16


def train_args(data: Path, exp: Path, *sets: str) -> list[str]:
    args = ["--conf", str(DEBUG), "--exp-dir", str(exp), "--data-root", str(data),
            "--train", "toy:train", "--valid", "toy:train"]
    for s in (f"trainer.max_steps={STEPS}", "trainer.save_every=8", "trainer.valid_every=0",
              "trainer.log_every=4", "data.valid_max_examples=4", *sets):
        args += ["--set", s]
    return args


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from dualspeech.bin.train import main

    root = tmp_path_factory.mktemp("lm")
    data = write_toy_corpus(root / "data", "toy", "train", n_per_task=6, num_speech_tokens=32,
                            n_codes=1024, spk_dim=256)
    write_shards(["--conf", str(DEBUG), "--data-root", str(data), "--sets", "toy:train"])
    exp = root / "exp"
    main(train_args(data, exp))
    return SimpleNamespace(root=root, data=data, exp=exp)


def valid_rows(exp: Path) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    with open(exp / "log" / "metrics.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["split"] == "valid":
                out.setdefault(int(r["step"]), {})[r["name"]] = float(r["value"])
    return out


def test_every_loss_goes_down_on_all_tasks(trained):
    from dualspeech.bin.train import make_valid_fn
    from dualspeech.config import build, load_yaml
    from dualspeech.data.dataset import DataConfig, build_datasets
    from dualspeech.data.vocab import SpeechVocab
    from dualspeech.models.dualspeechlm import DualSpeechLM

    cfg = load_yaml(trained.exp / "config.yaml")
    model = DualSpeechLM.from_config(cfg, SpeechVocab.load(trained.exp / "tokenizer")).eval()
    data_cfg = build(DataConfig, cfg["data"], "data")
    valid = build_datasets(data_cfg, model.templates, model.acoustic_spec(), ("valid",))["valid"]
    acc = SimpleNamespace(device=torch.device("cpu"), process_index=0, num_processes=1)
    with torch.no_grad():
        before = make_valid_fn(valid, data_cfg)(model, acc)
    after = valid_rows(trained.exp)[STEPS]
    assert set(before) == set(after)
    tasks = {k.split("/")[0] for k in after}
    assert tasks == {"asr", "s2tt", "ser", "sqa", "tts", "t2st", "vc", "sc"}
    assert {k.split("/")[1] for k in after} == {"text_ce", "semantic_ce", "acoustic_ce",
                                                "semantic_acc", "acoustic_acc"}
    worse = {k: (before[k], after[k]) for k in after
             if k.endswith("_ce") and not after[k] < before[k] - 0.02}
    assert not worse, f"losses that did not go down (before, after): {worse}"
    for name in ("loss_curves.png", "model/adapter/adapter_model.safetensors",
                 "model/extra.safetensors", "tokenizer/speech_vocab.json", "config.yaml"):
        assert (trained.exp / name).is_file(), name


def test_resume_equals_uninterrupted(trained):
    from dualspeech.bin.train import main

    exp = trained.root / "resumed"
    shutil.copytree(trained.exp, exp)
    last = f"step-{STEPS:08d}"
    shutil.rmtree(exp / "checkpoints" / last)
    shutil.rmtree(exp / "model")
    main(train_args(trained.data, exp))
    a = torch.load(trained.exp / "checkpoints" / last / "model.pt", weights_only=True)
    b = torch.load(exp / "checkpoints" / last / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and len(a) > 10
    diff = {k: float((a[k] - b[k]).abs().max()) for k in a if not torch.equal(a[k], b[k])}
    assert not diff, f"resumed run differs from the uninterrupted one: {diff}"
    first = torch.load(exp / "checkpoints" / "step-00000008" / "model.pt", weights_only=True)
    assert any(not torch.equal(first[k], a[k]) for k in a)   # it did train after resuming


def test_curriculum_trains_the_named_tasks_first(trained):
    """`data.sampler.curriculum` through bin.train: no generation loss while the understanding
    phase lasts, all 8 tasks after it."""
    from dualspeech.bin.train import main

    exp = trained.root / "curriculum"
    phase = "{steps: 8, weights: {asr: 1, s2tt: 1, ser: 1, sqa: 1}}"
    main(train_args(trained.data, exp, "trainer.save_every=0",
                    f"+data.sampler.curriculum=[{phase}]"))
    has = {}
    with open(exp / "log" / "metrics.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["split"] == "train" and r["name"] in ("has_semantic", "has_text"):
                has[(int(r["step"]), r["name"])] = float(r["value"])
    assert has[(4, "has_semantic")] == has[(8, "has_semantic")] == 0
    assert has[(4, "has_text")] == has[(8, "has_text")] == 1
    assert has[(12, "has_semantic")] + has[(16, "has_semantic")] > 0


def test_merged_model_equals_trained_model(trained):
    from dualspeech.bin.merge import main as merge_main
    from dualspeech.config import build
    from dualspeech.data.dataset import DataConfig, build_datasets
    from dualspeech.models.io import load_model

    out = trained.root / "merged"
    merge_main(["--exp-dir", str(trained.exp), "--out", str(out)])
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(out / "llm")
    trainedm = load_model(trained.exp)
    merged = load_model(out)
    assert plain.get_input_embeddings().weight.shape[0] == trainedm.vocab.size
    assert not any("lora" in n for n, _ in merged.named_parameters())
    data_cfg = build(DataConfig, trainedm.full_config["data"], "data")
    ds = build_datasets(data_cfg, trainedm.templates, trainedm.acoustic_spec(), ("valid",))["valid"]
    batch = ds.collate(ds.examples["tts"][:2] + ds.examples["asr"][:2])
    with torch.no_grad():
        a, b = trainedm(batch), merged(batch)
    for k in ("text_ce", "semantic_ce", "acoustic_ce"):
        assert abs(float(a[k]) - float(b[k])) < 1e-4, k
    ids = batch["input_ids"][:, :8]
    with torch.no_grad():
        h, _ = trainedm.hidden(ids, torch.ones_like(ids))
        ref = trainedm.logits(h)
        got = plain(input_ids=ids).logits[..., :trainedm.vocab.size]
    assert torch.allclose(ref, got, atol=1e-4)   # standalone HF model gives the same logits
