"""HuBERT k-means tokens with a random tiny HubertModel (real architecture, saved with
save_pretrained): k-means training, frame rate, nearest-centroid ids, sharded extraction."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml


@pytest.fixture
def hubert_dir(tmp_path):
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    cfg = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                       num_conv_pos_embedding_groups=2)
    HubertModel(cfg).save_pretrained(tmp_path / "hubert")
    return tmp_path / "hubert"


def test_train_and_extract(tmp_path, hubert_dir, make_speech):
    from lhotse import CutSet, Recording, RecordingSet

    from dualspeech.bin import extract_hubert
    from dualspeech.config import build
    from dualspeech.tokenizers.hubert import HubertConfig, HubertTokenizer

    paths = [make_speech(t, name=f"h{i}") for i, t in enumerate(
        ["one two three four", "the sun is bright today", "please open the window"])]
    bad = tmp_path / "short.wav"
    sf.write(bad, np.zeros(50, np.float32), 16000)
    cuts = tmp_path / "cuts.jsonl.gz"
    CutSet.from_manifests(recordings=RecordingSet.from_recordings(
        Recording.from_file(p) for p in paths + [bad])).to_file(cuts)
    conf = tmp_path / "hubert.yaml"
    section = {"model": str(hubert_dir), "kmeans": str(tmp_path / "km.pt"), "layer": 1,
               "num_clusters": 8}
    conf.write_text(yaml.safe_dump({"hubert": section}))
    with pytest.raises(SystemExit, match="--train-cuts"):
        extract_hubert.main(["--conf", str(conf), "--cuts", str(cuts), "--storage-dir", str(tmp_path / "s")])
    extract_hubert.main(["--conf", str(conf), "--cuts", str(cuts), "--storage-dir", str(tmp_path / "s"),
                         "--out-cuts", str(tmp_path / "out.jsonl.gz"), "--train-cuts", str(cuts),
                         "--nj", "2"])
    tok = HubertTokenizer(build(HubertConfig, section))
    assert tok.frame_rate == 50.0 and tok.codebook_size == 8
    out = [c for c in CutSet.from_file(tmp_path / "out.jsonl.gz") if c.has_custom("hubert_tokens")]
    assert len(out) == len(paths)
    for cut in out:
        ids = cut.hubert_tokens.load()
        wave = sf.read(cut.recording.sources[0].source, dtype="float32")[0]
        feats = tok.features(wave)
        assert ids.dtype == np.int16 and len(ids) == len(feats)
        assert abs(len(ids) - math.floor(len(wave) / 320)) <= 1
        brute = ((feats[:, None] - tok.centroids.numpy()[None]) ** 2).sum(-1).argmin(1)
        np.testing.assert_array_equal(ids, brute)
        assert cut.hubert_tokens.frame_shift == pytest.approx(0.02)
        assert cut.hubert_tokens_source == tok.identity
    # a k-means trained on another layer is refused
    with pytest.raises(ValueError, match="retrain the k-means"):
        HubertTokenizer(build(HubertConfig, {**section, "layer": 2}))
    with pytest.raises(Exception, match="hubert.layer must be in 0..2"):
        HubertTokenizer(build(HubertConfig, {**section, "layer": 5}))
