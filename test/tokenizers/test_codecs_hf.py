"""The ``hf`` codec on random tiny transformers EnCodec and DAC models saved with save_pretrained:
ids are the model's own codes (first ``num_codebooks`` residual codebooks), decoding uses the same
prefix, and configuration errors are clear."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dualspeech.config import ConfigError
from dualspeech.tokenizers.codecs import build_codec


def tiny_model(kind: str, path):
    import transformers

    torch.manual_seed(0)
    if kind == "encodec":
        cfg = transformers.EncodecConfig(target_bandwidths=[5.0, 10.0], sampling_rate=8000, hidden_size=16,
                                         num_filters=4, upsampling_ratios=[4, 4], num_lstm_layers=1,
                                         codebook_size=1024, codebook_dim=16)
        model = transformers.EncodecModel(cfg)
        with torch.no_grad():   # EnCodec starts with all-zero codebooks: use encoder latents
            latents = model.encoder(torch.randn(1, 1, 16000) * 0.1)[0].T   # [1000, 16]
            for name, buf in model.named_buffers():
                if name.endswith("codebook.embed"):
                    buf.copy_(latents[torch.randint(0, len(latents), (len(buf),))] * torch.rand(len(buf), 1))
    else:
        cfg = transformers.DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 4], decoder_hidden_size=16,
                                     n_codebooks=3, codebook_size=64, codebook_dim=4, sampling_rate=8000)
        model = transformers.DacModel(cfg)
    model.save_pretrained(path)
    return model.eval()


@pytest.mark.parametrize("kind, hop, k, size", [("encodec", 16, 1, 1024), ("encodec", 16, 2, 1024), ("dac", 8, 2, 64)])
def test_codes_and_round_trip(tmp_path, kind, hop, k, size):
    model = tiny_model(kind, tmp_path / kind)
    codec = build_codec({"name": "hf", "model": str(tmp_path / kind), "num_codebooks": k})
    assert (codec.sample_rate, codec.frame_rate, codec.codebook_size, codec.num_codebooks) == (
        8000, 8000 / hop, size, k)
    assert codec.identity.startswith(f"hf:{kind}:{kind}@")
    rng = np.random.default_rng(0)
    waves = [rng.normal(0, 0.1, n).astype(np.float32) for n in (800, 333)]
    ids = codec.encode(waves)
    with torch.no_grad():
        x = torch.from_numpy(waves[0])[None, None]
        direct = (model.encode(x, bandwidth=10.0) if kind == "encodec" else model.encode(x)).audio_codes
    direct = direct.reshape(-1, *direct.shape[-2:])[0][:k].T.numpy()
    want_shape = (800 // hop,) if k == 1 else (800 // hop, k)
    assert ids[0].shape == want_shape and ids[0].dtype == np.int64
    np.testing.assert_array_equal(ids[0].reshape(len(ids[0]), -1), direct)
    assert len(np.unique(ids[0])) > 1 and ids[0].max() < size
    out = codec.decode(ids)
    assert abs(len(out[0]) - len(ids[0]) * hop) < hop and np.isfinite(out[0]).all()
    with torch.no_grad():
        codes = torch.from_numpy(ids[0].reshape(len(ids[0]), -1).T.copy())[None]
        ref = (model.decode(codes[None], [None]) if kind == "encodec" else model.decode(audio_codes=codes)).audio_values
    np.testing.assert_allclose(out[0], ref.reshape(-1).numpy(), atol=1e-6)


def test_errors(tmp_path):
    tiny_model("dac", tmp_path / "dac")
    with pytest.raises(ConfigError, match=r"num_codebooks must be in 1..3"):
        build_codec({"name": "hf", "model": str(tmp_path / "dac"), "num_codebooks": 4})
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_codec({"name": "hf", "model": str(tmp_path / "empty")})
    import transformers

    transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                            intermediate_size=8).save_pretrained(tmp_path / "bert")
    with pytest.raises(ConfigError, match="'bert' model"):
        build_codec({"name": "hf", "model": str(tmp_path / "bert")})
