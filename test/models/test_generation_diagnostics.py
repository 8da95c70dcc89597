"""What tells a user whether generation learns: teacher-forced accuracies next to the losses,
and the semantic CE over the ids decoding can produce (``model.semantic_vocab: speech``)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dualspeech.testing.toy import toy_data, toy_model

DEBUG = str(Path(__file__).resolve().parents[2] / "egs/mini/conf/dualspeechlm_debug.yaml")
SMALL = ["model.acoustic_gpt.n_codes=128", "model.acoustic_gpt.spk_dim=16"]


def batch_and_model(tmp_path, *sets):
    from dualspeech.data.dataset import DataConfig, TaskDataset, load_examples

    model, cfg = toy_model(DEBUG, [*SMALL, *sets])
    data = toy_data(tmp_path / "data", cfg, n_per_task=4, part="train")
    exs = load_examples(data, ["toy:train"], tasks=("asr", "tts", "vc"))
    ds = TaskDataset(exs, model.templates, DataConfig(max_len=1024), model.acoustic_spec())
    return model, ds.collate(ds.examples["asr"][:2] + ds.examples["tts"] + ds.examples["vc"])


def manual_semantic(model, batch):
    """Semantic CE and accuracy recomputed from the logits, the slow obvious way."""
    with torch.no_grad():
        h, _ = model.hidden(batch["input_ids"], batch["attention_mask"])
        logits = model.logits(h[:, :-1]).float()
    speech = model.vocab.speech_output_mask()
    ce_full, ce_speech, hits = [], [], []
    for b in range(logits.shape[0]):
        if not bool(batch["is_generation"][b]):
            continue
        for t in range(logits.shape[1]):
            y = int(batch["labels"][b, t + 1])
            if y < 0:
                continue
            row = logits[b, t]
            ce_full.append(float(torch.logsumexp(row, 0) - row[y]))
            ce_speech.append(float(torch.logsumexp(row[speech], 0) - row[y]))
            hits.append(int(row.masked_fill(~speech, float("-inf")).argmax()) == y)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return mean(ce_full), mean(ce_speech), mean(hits)


@pytest.mark.parametrize("vocab", ["full", "speech"])
def test_semantic_ce_and_accuracy_match_a_manual_computation(tmp_path, vocab):
    model, batch = batch_and_model(tmp_path, f"model.semantic_vocab={vocab}")
    model.eval()
    with torch.no_grad():
        out = model(batch)
    ce_full, ce_speech, acc = manual_semantic(model, batch)
    assert float(out["semantic_ce"]) == pytest.approx(ce_full if vocab == "full" else ce_speech,
                                                      rel=1e-4)
    assert float(out["semantic_acc"]) == pytest.approx(acc)
    assert ce_speech < ce_full   # the text vocabulary holds probability mass the speech CE drops
    assert 0.0 <= float(out["acoustic_acc"]) <= 1.0 and float(out["has_acoustic"]) == 1


def test_accuracies_rise_when_the_model_fits_one_batch(tmp_path):
    model, batch = batch_and_model(tmp_path, "model.semantic_vocab=speech")
    model.eval()
    with torch.no_grad():
        before = model(batch)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        model(batch)["loss"].backward()
        opt.step()
    with torch.no_grad():
        after = model(batch)
    assert float(after["semantic_acc"]) > float(before["semantic_acc"]) + 0.2
    assert float(after["acoustic_acc"]) > float(before["acoustic_acc"]) + 0.2


def test_unknown_semantic_vocab_is_refused():
    from dualspeech.models.dualspeechlm import ModelConfig

    with pytest.raises(ValueError, match="semantic_vocab"):
        ModelConfig(semantic_vocab="text")


def test_validation_reports_accuracies(tmp_path):
    from dualspeech.bin.train import make_valid_fn, valid_keys
    from dualspeech.data.dataset import DataConfig, TaskDataset, load_examples
    from types import SimpleNamespace

    model, cfg = toy_model(DEBUG, SMALL)
    data = toy_data(tmp_path / "data", cfg, n_per_task=2, part="train")
    ds = TaskDataset(load_examples(data, ["toy:train"], tasks=("asr", "tts")), model.templates,
                     DataConfig(max_len=1024), model.acoustic_spec())
    assert valid_keys(ds, True) == ["asr/text_ce", "tts/semantic_ce", "tts/semantic_acc",
                                    "tts/acoustic_ce", "tts/acoustic_acc"]
    acc = SimpleNamespace(device=torch.device("cpu"), process_index=0, num_processes=1)
    with torch.no_grad():
        out = make_valid_fn(ds, DataConfig(max_len=1024, valid_max_examples=2))(model.eval(), acc)
    assert set(out) == set(valid_keys(ds, True))
    assert all(0.0 <= out[k] <= 1.0 for k in out if k.endswith("_acc"))
