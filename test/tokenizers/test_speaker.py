"""Speaker encoders: real resemblyzer weights separate espeak voices, the ONNX path runs a
3D-Speaker-style export (fbank in, embedding out), config errors, and extract_speaker writes a
``speaker_embedding`` Array per cut (resumable, bad audio skipped)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from lhotse import AudioSource, CutSet, Recording

from dualspeech.audio import load_audio
from dualspeech.config import ConfigError
from dualspeech.data.manifest_io import speech_cut
from dualspeech.tokenizers.speaker import build_speaker_encoder, cosine, kaldi_fbank

TEXTS = ["the quick brown fox jumps over the lazy dog near the river bank",
         "she sells sea shells by the sea shore every sunny morning",
         "a journey of a thousand miles begins with a single careful step"]


def test_resemblyzer_same_voice_closer_than_different_voice(make_speech):
    enc = build_speaker_encoder({"name": "resemblyzer"})
    assert enc.dim == 256 and enc.identity.startswith("resemblyzer:pretrained.pt@")
    waves = {}
    for voice, pitch in (("en-us", 40), ("en-gb+f3", 75)):
        waves[voice] = [load_audio(make_speech(t, f"{voice}{i}", voice=voice, pitch=pitch), 16000)[0]
                        for i, t in enumerate(TEXTS[:2])]
    a, b = enc.embed(waves["en-us"]), enc.embed(waves["en-gb+f3"])
    assert a.shape == (2, 256) and a.dtype == np.float32
    same = float(np.mean([cosine(a[0], a[1]), cosine(b[0], b[1])]))
    diff = float(np.mean(cosine(a, b[::-1])))
    print(f"resemblyzer cosine: same voice {same:.3f}, different voice {diff:.3f}")
    assert same > diff + 0.05, (same, diff)


def test_resemblyzer_batched_equals_one_utterance_at_a_time(make_speech):
    """Partial windows of many waves share LSTM batches (one a long, multi-window wave): the
    embeddings are resemblyzer's own ``embed_utterance`` of each wave."""
    from resemblyzer import preprocess_wav

    enc = build_speaker_encoder({"name": "resemblyzer"})
    waves = [load_audio(make_speech(t, f"b{i}", pitch=30 + 20 * i), 16000)[0]
             for i, t in enumerate(TEXTS)]
    waves.append(np.concatenate(waves))
    one = [enc.encoder.embed_utterance(preprocess_wav(w, source_sr=16000)) for w in waves]
    assert np.abs(enc.embed(waves) - np.stack(one)).max() < 1e-5


def test_kaldi_fbank_shape_and_tone_peak():
    sr, f0 = 16000, 1000.0
    wave = 0.5 * np.sin(2 * np.pi * f0 * np.arange(sr) / sr)
    fb = kaldi_fbank(wave)
    assert fb.shape == (1 + (sr - 400) // 160, 80)
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)   # noqa: E731
    centres = np.linspace(mel(20.0), mel(8000.0), 82)[1:-1]
    assert abs(int(fb.mean(0).argmax()) - int(np.abs(centres - mel(f0)).argmin())) <= 1


class TinySpeakerNet(torch.nn.Module):
    """Stands in for a 3D-Speaker export: [1, T, 80] fbank -> [1, 32] embedding."""
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(80, 32)

    def forward(self, feats):
        return torch.tanh(self.proj(feats)).mean(1)


def test_onnx_encoder_matches_torch(tmp_path, make_speech):
    torch.manual_seed(0)
    net = TinySpeakerNet().eval()
    path = tmp_path / "spk.onnx"
    torch.onnx.export(net, (torch.randn(1, 50, 80),), str(path), input_names=["feature"],
                      output_names=["embedding"], dynamic_axes={"feature": {1: "frames"}}, dynamo=False)
    enc = build_speaker_encoder({"name": "onnx", "model": str(path)})
    wave = load_audio(make_speech(TEXTS[0]), 16000)[0]
    emb = enc.embed([wave])
    feats = kaldi_fbank(wave)
    want = net(torch.from_numpy(feats - feats.mean(0))[None]).detach().numpy()
    assert enc.dim == 32 and emb.shape == (1, 32)
    np.testing.assert_allclose(emb, want, atol=1e-5)
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        build_speaker_encoder({"name": "onnx", "model": str(tmp_path / "bad.onnx")})


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown speaker encoder 'ecapa'"):
        build_speaker_encoder({"name": "ecapa"})
    with pytest.raises(ConfigError, match="speaker"):
        build_speaker_encoder({"name": "resemblyzer", "dim": 3})
    with pytest.raises(ConfigError, match="WavLMForXVector"):
        build_speaker_encoder({"name": "wavlm_sv"})
    with pytest.raises(FileNotFoundError, match="3D-Speaker"):
        build_speaker_encoder({"name": "onnx", "model": str(tmp_path / "missing.onnx")})


def test_extract_speaker_cli(tmp_path, make_speech):
    from dualspeech.bin import extract_speaker

    cuts = [speech_cut(Recording.from_file(make_speech(t, f"u{i}"), recording_id=f"u{i}"), t, "s")
            for i, t in enumerate(TEXTS)]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF junk")
    cuts.append(speech_cut(Recording(id="broken", sources=[AudioSource("file", [0], str(broken))],
                                     sampling_rate=16000, num_samples=16000, duration=1.0), "x", "s"))
    CutSet.from_cuts(cuts).to_file(tmp_path / "in.jsonl.gz")
    conf = tmp_path / "spk.yaml"
    conf.write_text("speaker:\n  name: resemblyzer\n")
    argv = ["--conf", str(conf), "--cuts", str(tmp_path / "in.jsonl.gz"), "--out-cuts",
            str(tmp_path / "out.jsonl.gz"), "--storage-dir", str(tmp_path / "store"), "--nj", "2",
            "--chunk-size", "1"]
    assert extract_speaker.main(argv + ["--job", "0"]) is None      # shard 1 still missing
    assert extract_speaker.main(argv + ["--job", "1"]) == tmp_path / "out.jsonl.gz"
    out = {c.id: c for c in CutSet.from_file(tmp_path / "out.jsonl.gz")}
    assert list(out) == ["u0", "u1", "u2", "broken"]
    assert not out["broken"].has_custom("speaker_embedding")
    direct = build_speaker_encoder({"name": "resemblyzer"}).embed(
        [load_audio(tmp_path / "u1.wav", 16000)[0]])[0]
    np.testing.assert_allclose(out["u1"].load_speaker_embedding(), direct, atol=1e-5)
    assert out["u1"].speaker_embedding_source.startswith("resemblyzer:")
    conf.write_text("speaker:\n  name: resemblyzer\n  trim_silence: false\n")
    with pytest.raises(RuntimeError, match="--force"):
        extract_speaker.main(argv)
