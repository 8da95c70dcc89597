"""AcousticGPT positions: the condition prefix has its own position table, so ``block_size``
counts acoustic tokens only (a long VC source no longer drops the example)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dualspeech.models.acoustic_gpt import AcousticGPT, AcousticGPTConfig
from dualspeech.testing.toy_corpus import write_toy_corpus

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "egs/mini/conf/dualspeechlm_debug.yaml"


def test_condition_longer_than_block_size_trains_and_generates():
    torch.manual_seed(0)
    gpt = AcousticGPT(AcousticGPTConfig(n_codes=40, n_layer=1, n_embd=32, n_head=4, block_size=20,
                                        cond_block_size=64, spk_dim=7, cond_dim=16)).eval()
    cond, mask, spk = torch.randn(2, 50, 16), torch.ones(2, 50, dtype=torch.bool), torch.randn(2, 7)
    tokens, tmask = gpt.make_tokens([torch.randint(0, 40, (18,)), torch.randint(0, 40, (5,))])
    loss, _ = gpt(cond, mask, spk, tokens, tmask)
    assert torch.isfinite(loss)
    out = gpt.generate(cond, mask, spk, max_len=100, top_k=1, min_len=100)
    assert [len(c) for c in out] == [19, 19]      # the start token takes one of 20 positions
    with pytest.raises(ValueError, match="acoustic_gpt.block_size=20"):
        gpt(cond, mask, spk, *gpt.make_tokens([torch.zeros(19, dtype=torch.long)]))
    with pytest.raises(ValueError, match="cond_block_size=64"):
        gpt(torch.randn(1, 70, 16), torch.ones(1, 70, dtype=torch.bool), spk[:1], tokens[:1],
            tmask[:1])


def long_vc_corpus(root: Path, src_frames: int, tgt_frames: int, codec_frames: int) -> Path:
    """Toy corpus whose VC example has a long source, target and target codec sequence."""
    from lhotse import CutSet, NumpyFilesWriter
    from lhotse.utils import fastcopy

    write_toy_corpus(root, "toy", "train", n_per_task=1, num_speech_tokens=32, n_codes=64,
                     spk_dim=16)
    vc = next(iter(CutSet.from_file(root / "tasks" / "toy_vc_train.jsonl.gz")))
    src, tgt = vc.id, vc.custom["links"]["target"]
    rng = np.random.default_rng(0)
    cuts = []
    with NumpyFilesWriter(root / "arrays" / "long") as w:
        for c in CutSet.from_file(root / "cuts" / "toy_cuts_train.jsonl.gz"):
            if c.id in (src, tgt):
                n = src_frames if c.id == src else tgt_frames
                custom = dict(c.custom)
                custom["ustokens"] = w.store_array(c.id + "_ls", rng.integers(0, 32, n),
                                                   frame_shift=0.04, temporal_dim=0, start=0.0)
                if c.id == tgt:
                    custom["acoustic_tokens"] = w.store_array(
                        c.id + "_la", rng.integers(0, 64, codec_frames), frame_shift=0.025,
                        temporal_dim=0, start=0.0)
                c = fastcopy(c, duration=n * 0.04, custom=custom)
            cuts.append(c)
    CutSet.from_cuts(cuts).to_file(root / "cuts" / "toy_cuts_train.jsonl.gz")
    return root


def test_long_vc_example_now_trains(tmp_path):
    """LLM sequence ~1610 + 1000 codec frames: over 2000 positions in one table (the old
    layout skipped it), within both tables now; a codec sequence over block_size is skipped
    with a count in the log."""
    from dualspeech.data.dataset import DataConfig, TaskDataset, load_examples
    from dualspeech.testing.toy import toy_model

    model, _ = toy_model(str(DEBUG), ["model.acoustic_gpt.n_codes=64",
                                      "model.acoustic_gpt.spk_dim=16",
                                      "model.acoustic_gpt.block_size=2000"])
    data = long_vc_corpus(tmp_path / "data", 800, 800, 1000)
    exs = load_examples(data, ["toy:train"], tasks=("vc",))
    ds = TaskDataset(exs, model.templates, DataConfig(max_len=2048), model.acoustic_spec())
    assert len(ds.examples["vc"]) == 1
    n = ds.lengths["vc"][0]
    assert n + 1 + 1000 + 2 > 2000 and n <= 2048
    model.train()
    out = model(ds.collate(ds.examples["vc"]))
    assert float(out["has_acoustic"]) == 1 and torch.isfinite(out["acoustic_ce"])
    out["loss"].backward()
    assert model.acoustic_gpt.cpe.weight.grad.abs().sum() > 0

    too_long = long_vc_corpus(tmp_path / "data2", 100, 100, 1999)
    exs = load_examples(too_long, ["toy:train"], tasks=("vc", "asr"))
    ds = TaskDataset(exs, model.templates, DataConfig(max_len=2048), model.acoustic_spec())
    assert "vc" not in ds.examples and len(ds.examples["asr"]) == 1
