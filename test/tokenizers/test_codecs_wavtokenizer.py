"""WavTokenizer: our implementation loads a Lightning checkpoint in the official key layout (a
random one: the real weights cannot be downloaded here) with the official config YAML format,
drops discriminator/loss keys, encodes ceil(T / 600) nearest-codebook ids per clip, decodes exactly
600 samples per id, and names what is wrong with a bad checkpoint."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from dualspeech.config import ConfigError
from dualspeech.tokenizers.codecs import build_codec
from dualspeech.tokenizers.codecs.wavtokenizer import (ISTFT, CheckpointError, WavTokenizerArch,
                                                       WavTokenizerModel, seanet_encoder)

SMALL = {"encoder_filters": 4, "encoder_dim": 64}   # real models: 32 filters, 512-d latents


def official_yaml(path, dim=64, input_channels=64, layers=2):
    """The released 40 tokens/s config's layout, with small backbone numbers."""
    cfg = {"seed_everything": 3407, "model": {"class_path": "decoder.experiment.WavTokenizer", "init_args": {
        "sample_rate": 24000, "initial_learning_rate": 2e-4, "mel_loss_coeff": 45, "mrd_loss_coeff": 1.0,
        "feature_extractor": {"class_path": "decoder.feature_extractors.EncodecFeatures", "init_args": {
            "encodec_model": "encodec_24khz", "bandwidths": [6.6, 6.6, 6.6, 6.6], "train_codebooks": True,
            "num_quantizers": 1, "dowmsamples": [6, 5, 5, 4], "vq_bins": 4096, "vq_kmeans": 200}},
        "backbone": {"class_path": "decoder.models.VocosBackbone", "init_args": {
            "input_channels": input_channels, "dim": dim, "intermediate_dim": 2 * dim,
            "num_layers": layers, "adanorm_num_embeddings": 4}},
        "head": {"class_path": "decoder.heads.ISTFTHead", "init_args": {
            "dim": dim, "n_fft": 2400, "hop_length": 600, "padding": "same"}}}}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def lightning_checkpoint(path, model: WavTokenizerModel, drop: str | None = None):
    """torch.save of a Lightning-style dict: generator + discriminator/loss weights, counters."""
    torch.manual_seed(1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for k in state:   # random, non-trivial weight norm gains and codebook
        if k.endswith("weight_g"):
            state[k] = torch.rand_like(state[k]) + 0.5
    state.update({"multiperioddisc.discriminators.0.convs.0.weight": torch.randn(4, 1, 5, 1),
                  "multiresddisc.discriminators.0.convs.0.weight_g": torch.randn(8, 1, 1),
                  "dac.quantizer.0.codebook.weight": torch.randn(8, 4),
                  "melspec_loss.mel_spec.spectrogram.window": torch.hann_window(16)})
    if drop:
        del state[drop]
    torch.save({"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.8.6",
                "state_dict": state, "optimizer_states": [], "lr_schedulers": []}, path)
    return path


@pytest.fixture
def codec_files(tmp_path):
    conf = official_yaml(tmp_path / "wavtokenizer_frame40.yaml")
    torch.manual_seed(0)
    model = WavTokenizerModel(WavTokenizerArch.from_yaml(conf, **SMALL))
    return conf, lightning_checkpoint(tmp_path / "wavtokenizer.ckpt", model), model


def test_official_key_layout():
    """Key names and shapes that WAVTOKENIZER.md lists for the released checkpoint."""
    enc = {k: tuple(v.shape) for k, v in seanet_encoder(WavTokenizerArch()).state_dict().items()}
    assert len(enc) == 62
    assert enc["0.conv.conv.weight_v"] == (32, 1, 7) and enc["0.conv.conv.weight_g"] == (32, 1, 1)
    assert [enc[f"{i}.conv.conv.weight_v"] for i in (3, 6, 9, 12)] == [
        (64, 32, 8), (128, 64, 10), (256, 128, 10), (512, 256, 12)]
    assert enc["1.block.1.conv.conv.weight_v"] == (16, 32, 3) and enc["1.shortcut.conv.conv.bias"] == (32,)
    assert enc["13.lstm.weight_ih_l1"] == (2048, 512) and enc["15.conv.conv.weight_v"] == (512, 512, 7)
    keys = WavTokenizerModel(WavTokenizerArch(encoder_filters=4, encoder_dim=64, dim=32,
                                              intermediate_dim=32, codebook_size=8)).state_dict()
    groups = {p: sum(k.startswith(p) for k in keys) for p in (
        "feature_extractor.encodec.encoder.", "feature_extractor.encodec.decoder.",
        "feature_extractor.encodec.quantizer.", "backbone.", "head.")}
    assert list(groups.values()) == [62, 62, 4, 158, 3] and len(keys) == 289
    convtr = "feature_extractor.encodec.decoder.model.3.convtr.convtr."   # v [in, out, k], g [in, 1, 1]
    assert (tuple(keys[convtr + "weight_v"].shape) == (64, 32, 16)
            and tuple(keys[convtr + "weight_g"].shape) == (64, 1, 1))
    for k in ("feature_extractor.encodec.quantizer.vq.layers.0._codebook.embed_avg", "backbone.pos_net.2.q.weight",
              "backbone.norm.scale.weight", "backbone.convnext.11.gamma", "head.out.weight", "head.istft.window"):
        assert k in keys, k


def test_encode_decode(codec_files):
    conf, ckpt, _ = codec_files
    codec = build_codec({"name": "wavtokenizer", "config": str(conf), "checkpoint": str(ckpt), **SMALL})
    assert (codec.sample_rate, codec.frame_rate, codec.codebook_size) == (24000, 40.0, 4096)
    assert codec.identity.startswith("wavtokenizer:wavtokenizer.ckpt@")
    t = np.arange(12001) / 24000
    waves = [(0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), np.random.default_rng(0).normal(
        0, 0.1, 5000).astype(np.float32), np.full(100, 0.1, np.float32)]
    ids = codec.encode(waves)
    assert [len(i) for i in ids] == [math.ceil(len(w) / 600) for w in waves] == [21, 9, 1]
    assert len(codec.encode([waves[0][:12000]])[0]) == 20
    # the ids are the nearest codebook entries of the encoder latents (loaded weights, not init)
    model = codec.model
    latents = model.latents(torch.from_numpy(waves[1])[None])[0].T
    embed = model.codebook.embed
    assert torch.equal(embed, torch.load(ckpt, weights_only=True)["state_dict"][
        "feature_extractor.encodec.quantizer.vq.layers.0._codebook.embed"])
    np.testing.assert_array_equal(ids[1], torch.cdist(latents, embed).argmin(1).numpy())
    assert len(set(ids[1].tolist())) > 1
    out = codec.decode(ids)
    assert [len(o) for o in out] == [600 * len(i) for i in ids]
    assert all(np.isfinite(o).all() for o in out)
    # bandwidth id selects a different AdaLayerNorm row
    other = build_codec({"name": "wavtokenizer", "config": str(conf), "checkpoint": str(ckpt),
                         "bandwidth_id": 1, **SMALL})
    with torch.no_grad():
        other.model.backbone.norm.scale.weight[1] += 1.0
    assert not np.allclose(other.decode(ids[:1])[0], out[0])


def test_istft_same_matches_torch_istft():
    torch.manual_seed(0)
    spec = torch.polar(torch.rand(2, 1201, 7) + 0.1, torch.rand(2, 1201, 7) * 6.28)
    ours = ISTFT(2400, 600)(spec)
    # frame-by-frame reference: irfft, periodic hann, overlap-add, / summed squared window, trim 900
    win = np.hanning(2401)[:-1]
    y, env = np.zeros((2, 6 * 600 + 2400)), np.zeros(6 * 600 + 2400)
    for i in range(7):
        y[:, i * 600:i * 600 + 2400] += np.fft.irfft(spec[:, :, i].numpy(), 2400) * win
        env[i * 600:i * 600 + 2400] += win ** 2
    ref = (y / np.where(env > 0, env, 1))[:, 900:900 + 7 * 600]
    assert ours.shape == (2, 7 * 600)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-3, atol=1e-5)


def test_bad_checkpoints(tmp_path, codec_files):
    conf, _, model = codec_files
    opts = {"name": "wavtokenizer", "config": str(conf), **SMALL}
    missing = "backbone.convnext.1.gamma"
    lightning_checkpoint(tmp_path / "missing.ckpt", model, drop=missing)
    with pytest.raises(CheckpointError, match=f"1 missing key.*{missing}"):
        build_codec({**opts, "checkpoint": str(tmp_path / "missing.ckpt")})
    (tmp_path / "corrupt.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="corrupt"):
        build_codec({**opts, "checkpoint": str(tmp_path / "corrupt.ckpt")})
    torch.save({"generator": {}}, tmp_path / "nostate.ckpt")
    with pytest.raises(CheckpointError, match="'state_dict'"):
        build_codec({**opts, "checkpoint": str(tmp_path / "nostate.ckpt")})
    with pytest.raises(FileNotFoundError, match="WavTokenizer-large-unify-40token") as err:
        build_codec({**opts, "checkpoint": str(tmp_path / "absent.ckpt")})
    assert "absent.ckpt" in str(err.value) and "tools/download_models.py wavtokenizer" in str(err.value)
    wide = official_yaml(tmp_path / "wide.yaml", dim=96)   # config of another model size
    with pytest.raises(CheckpointError, match="shape mismatch.*backbone"):
        build_codec({**opts, "config": str(wide), "checkpoint": str(tmp_path / "missing.ckpt")})
    (tmp_path / "notwt.yaml").write_text("model: {init_args: {sample_rate: 24000}}\n")
    with pytest.raises(ConfigError, match="not a WavTokenizer training config"):
        build_codec({**opts, "config": str(tmp_path / "notwt.yaml"),
                     "checkpoint": str(tmp_path / "nostate.ckpt")})
