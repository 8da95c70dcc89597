"""Unit vocoder (``unit_hifigan``): a checkpoint in the fairseq CodeHiFiGAN layout of the mHuBERT
1000-unit vocoder, built here key by key with random weights, loads strictly and decodes units
to audio of the expected length (with and without the duration predictor); a wrong checkpoint
names its keys; training on our own (units, speech) pairs lowers the mel error."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dualspeech.tokenizers.codecs import build_codec
from dualspeech.tokenizers.codecs.layers import CheckpointError
from dualspeech.tokenizers.codecs.unit_hifigan import (UnitHiFiGAN, UnitHiFiGANTrainConfig, dedup,
                                                       load_unit_hifigan, train_unit_hifigan)

# the config.json published with fairseq's mHuBERT (1000 units) CodeHiFiGAN vocoder
MHUBERT = {"resblock": "1", "upsample_rates": [5, 4, 4, 2, 2], "upsample_kernel_sizes": [11, 8, 8, 4, 4],
           "upsample_initial_channel": 512, "resblock_kernel_sizes": [3, 7, 11],
           "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "num_embeddings": 1000,
           "embedding_dim": 128, "model_in_dim": 128, "segment_size": 8960, "code_hop_size": 320,
           "f0": False, "num_mels": 80, "num_freq": 1025, "n_fft": 1024, "hop_size": 256,
           "win_size": 1024, "sampling_rate": 16000, "dur_prediction_weight": 1.0,
           "dur_predictor_params": {"encoder_embed_dim": 128, "var_pred_hidden_dim": 128,
                                    "var_pred_kernel_size": 3, "var_pred_dropout": 0.5}}


def fairseq_state(cfg: dict) -> dict[str, torch.Tensor]:
    """Random tensors under the key names and shapes of fairseq's CodeGenerator state dict."""
    g = torch.Generator().manual_seed(0)

    def wn(prefix, shape):   # torch.nn.utils.weight_norm(dim=0) -> weight_g, weight_v, bias
        out_ch = shape[1] if prefix.startswith("ups.") else shape[0]
        return {f"{prefix}.weight_g": torch.rand(shape[0], 1, 1, generator=g) + 0.5,
                f"{prefix}.weight_v": torch.randn(*shape, generator=g) * 0.01,
                f"{prefix}.bias": torch.randn(out_ch, generator=g) * 0.01}

    ch, emb = cfg["upsample_initial_channel"], cfg["embedding_dim"]
    state = {"dict.weight": torch.randn(cfg["num_embeddings"], emb, generator=g),
             **wn("conv_pre", (ch, cfg["model_in_dim"], 7))}
    n_k = len(cfg["resblock_kernel_sizes"])
    for i, k in enumerate(cfg["upsample_kernel_sizes"]):
        state.update(wn(f"ups.{i}", (ch // 2 ** i, ch // 2 ** (i + 1), k)))
        c = ch // 2 ** (i + 1)
        for j, (rk, dil) in enumerate(zip(cfg["resblock_kernel_sizes"], cfg["resblock_dilation_sizes"])):
            for m in range(len(dil)):
                state.update(wn(f"resblocks.{i * n_k + j}.convs1.{m}", (c, c, rk)))
                state.update(wn(f"resblocks.{i * n_k + j}.convs2.{m}", (c, c, rk)))
    state.update(wn("conv_post", (1, c, 7)))
    p = cfg.get("dur_predictor_params")
    if p:
        h, k = p["var_pred_hidden_dim"], p["var_pred_kernel_size"]
        state.update({"dur_predictor.conv1.0.weight": torch.randn(h, p["encoder_embed_dim"], k, generator=g) * 0.01,
                      "dur_predictor.conv1.0.bias": torch.zeros(h),
                      "dur_predictor.ln1.weight": torch.ones(h), "dur_predictor.ln1.bias": torch.zeros(h),
                      "dur_predictor.conv2.0.weight": torch.randn(h, h, k, generator=g) * 0.01,
                      "dur_predictor.conv2.0.bias": torch.zeros(h),
                      "dur_predictor.ln2.weight": torch.ones(h), "dur_predictor.ln2.bias": torch.zeros(h),
                      # every unit lasts round(exp(log 4) - 1) = 3 frames
                      "dur_predictor.proj.weight": torch.zeros(1, h),
                      "dur_predictor.proj.bias": torch.tensor([float(np.log(4.0))])})
    return state


@pytest.fixture(scope="module")
def mhubert_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("mhubert_vocoder")
    (root / "config.json").write_text(json.dumps(MHUBERT))
    torch.save({"generator": fairseq_state(MHUBERT)}, root / "g_00500000")
    return root / "g_00500000", root / "config.json"


def test_fairseq_layout_loads_strictly_and_decodes(mhubert_files):
    ckpt, cfg = mhubert_files
    codec = build_codec({"name": "unit_hifigan", "checkpoint": str(ckpt), "config": str(cfg)})
    assert (codec.sample_rate, codec.frame_rate, codec.codebook_size) == (16000, 50.0, 1000)
    assert codec.identity.startswith("unit_hifigan:g_00500000@")
    units = np.array([5, 5, 7, 7, 7, 9, 999])
    runs, lengths = dedup(units)
    assert runs.tolist() == [5, 7, 9, 999] and lengths.tolist() == [2, 3, 1, 1]
    # deduplicated units, 3 predicted frames each, 320 samples per frame
    (wave,) = codec.decode([units])
    assert wave.shape == (4 * 3 * 320,) and np.isfinite(wave).all() and np.abs(wave).max() <= 1
    # without duration prediction: one frame per unit as given
    plain = build_codec({"name": "unit_hifigan", "checkpoint": str(ckpt), "config": str(cfg),
                         "dur_prediction": False})
    assert plain.decode([units])[0].shape == (len(units) * 320,)
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1000\)"):
        codec.decode([np.array([1000])])
    with pytest.raises(NotImplementedError, match="only decodes"):
        codec.encode([np.zeros(1600, np.float32)])


def test_wrong_checkpoints_are_named(tmp_path, mhubert_files):
    _, cfg = mhubert_files
    state = fairseq_state(MHUBERT)
    state.pop("resblocks.4.convs2.1.weight_g")
    state["extra.weight"] = torch.zeros(1)
    torch.save({"generator": state}, tmp_path / "bad")
    with pytest.raises(CheckpointError, match=r"1 missing key.*resblocks\.4\.convs2\.1\.weight_g.*"
                                              r"1 unexpected key.*extra\.weight"):
        load_unit_hifigan(tmp_path / "bad", cfg)
    torch.save(fairseq_state(MHUBERT), tmp_path / "flat")
    with pytest.raises(CheckpointError, match="'generator'"):
        load_unit_hifigan(tmp_path / "flat", cfg)
    with pytest.raises(FileNotFoundError, match="train_codec"):
        load_unit_hifigan(tmp_path / "none", cfg)


def test_trains_on_our_units(tmp_path, make_speech):
    from dualspeech.audio import load_audio
    from dualspeech.tokenizers.codecs.hifigan import HiFiGANConfig, MelFrontEnd

    cfg = UnitHiFiGANTrainConfig(num_embeddings=16, embedding_dim=16, sampling_rate=16000,
                                 upsample_rates=(8, 5, 4), upsample_kernel_sizes=(16, 10, 8),
                                 upsample_initial_channel=32, resblock_kernel_sizes=(3,),
                                 resblock_dilation_sizes=((1, 3),), steps=40, batch_size=2,
                                 segment_units=20, lr=2e-3)
    pairs = []
    for i, text in enumerate(["one two three four", "the cat sat on the mat"]):
        wave = load_audio(make_speech(text, f"u{i}"), 16000)[0]
        n = len(wave) // 160   # fake units: a coarse energy code per 10 ms, in runs
        energy = np.array([np.abs(wave[j * 160:(j + 1) * 160]).mean() for j in range(n)])
        pairs.append((np.minimum((energy / (energy.max() + 1e-9) * 15).astype(int), 15), wave))
    hcfg = HiFiGANConfig.from_dict(cfg.fairseq_config())
    torch.manual_seed(cfg.seed)
    untrained = UnitHiFiGAN(hcfg).eval()          # the model training starts from
    ckpt, cfg_path = train_unit_hifigan(pairs, cfg, tmp_path / "vocoder")
    trained = load_unit_hifigan(ckpt, cfg_path)
    mel = MelFrontEnd(HiFiGANConfig.from_dict({**cfg.fairseq_config(), "model_in_dim": 80}))

    def mel_error(model):
        with torch.no_grad():
            errs = []
            for units, wave in pairs:
                n = min(len(units), len(wave) // 160)
                y = model(model.dict(torch.from_numpy(units[:n])[None]).transpose(1, 2))
                errs.append((mel(y) - mel(torch.from_numpy(wave[: n * 160])[None])).abs().mean())
            return float(np.mean(errs))

    before, after = mel_error(untrained), mel_error(trained)
    assert after < 0.8 * before, (before, after)
    codec = build_codec({"name": "unit_hifigan", "checkpoint": str(ckpt), "config": str(cfg_path)})
    assert codec.frame_rate == 100.0 and len(codec.decode([np.array([1, 1, 2])])[0]) > 0
