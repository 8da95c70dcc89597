"""The listening gap (dualspeech/inference/listening.py): answer CE with shuffled minus matched
input speech, per understanding task. The matched CE is the model's own text loss; a model whose
answers depend on the speech rows has a gap; the CLI prints it per task."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dualspeech.config import build, load_config
from dualspeech.data.dataset import DataConfig, TaskDataset, load_examples
from dualspeech.data.tasks import UNDERSTANDING
from dualspeech.inference.listening import listening_gaps
from dualspeech.models.dualspeechlm import DualSpeechLM
from dualspeech.testing.toy_corpus import write_toy_corpus

DEBUG = Path(__file__).resolve().parents[2] / "egs/mini/conf/dualspeechlm_debug.yaml"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = write_toy_corpus(tmp_path_factory.mktemp("listen") / "data", "toy", "dev",
                            n_per_task=5, num_speech_tokens=32, n_codes=1024, spk_dim=256)
    cfg = load_config(DEBUG, ["model.lora.rank=0"])
    model = DualSpeechLM.from_config(cfg).eval()
    with torch.no_grad():     # rows far apart, so that a random model's answers depend on them
        model.speech_embed.normal_(0, 1.0)
    data_cfg = build(DataConfig, cfg["data"], "data")
    return root, model, data_cfg, load_examples(root, ["toy:dev"])


def test_a_model_that_reads_speech_has_a_gap_and_matched_ce_is_the_models(setup):
    _, model, data_cfg, examples = setup
    gaps = listening_gaps(model, examples, data_cfg, max_examples=4, batch_size=8)
    assert [g.task for g in gaps] == sorted(UNDERSTANDING)   # generation tasks are left out
    assert all(g.n == 4 for g in gaps)
    assert all(abs(g.gap) > 1e-3 for g in gaps), gaps
    asr = sorted(examples["asr"], key=lambda ex: ex.id)[:4]
    ds = TaskDataset({"asr": asr}, model.templates, data_cfg, model.acoustic_spec())
    with torch.no_grad():
        direct = float(model(ds.collate(asr))["text_ce"])
    assert gaps[0].task == "asr" and abs(gaps[0].matched_ce - direct) < 1e-5


def test_cli_prints_every_task_and_the_mean(setup, tmp_path, capsys):
    from dualspeech.bin.listening_gap import main
    from dualspeech.models.io import export_model

    root, model, _, _ = setup
    out = export_model(model, tmp_path / "model")
    main(["--model", str(out), "--data-root", str(root), "--sources", "toy:dev",
          "--max-examples", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines[1:-1]] == sorted(UNDERSTANDING)
    assert lines[-1].startswith("mean_listening_gap=") and float(lines[-1].split("=")[1]) != 0.0
    with pytest.raises(SystemExit, match="no understanding task"):
        main(["--model", str(out), "--data-root", str(root), "--sources", "toy:dev",
              "--max-examples", "1"])
