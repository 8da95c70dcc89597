"""VQ-Mel, the intelligible offline codec: train_codec trains it on espeak speech and writes the
codec section; ids come at half the HiFi-GAN mel frame rate, decoding gives 2 * 256 samples per
id through the published vocoder; training lowers the mel reconstruction error; bad inputs fail
clearly."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from lhotse import CutSet, Recording

from dualspeech.audio import load_audio
from dualspeech.data.manifest_io import speech_cut
from dualspeech.tokenizers.codecs import build_codec
from dualspeech.tokenizers.codecs.vqmel import VQMelCodec, pad_frames

TEXTS = ["the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
         "a journey of a thousand miles begins with a single step"]
TINY = ("vqmel_train:\n  arch: {channels: 16, code_dim: 8, codebook_size: 16, encoder_blocks: 1,"
        " decoder_blocks: 1}\n  batch_size: 4\n  segment_frames: 32\n  lr: 0.003\n")


def train(tmp_path, steps: int):
    from dualspeech.bin import train_codec

    conf = tmp_path / f"codec{steps}.yaml"
    conf.write_text(f"codec:\n  name: vqmel\n  checkpoint: unused.pt\n{TINY}  steps: {steps}\n")
    resolved = train_codec.main(["--conf", str(conf), "--cuts", str(tmp_path / "cuts.jsonl.gz"),
                                 "--out-dir", str(tmp_path / f"exp{steps}")])
    return yaml.safe_load(resolved.read_text())["codec"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import soundfile as sf
    from conftest import espeak_wave

    root = tmp_path_factory.mktemp("vqmel")
    cuts = []
    for i, text in enumerate(TEXTS):
        sf.write(root / f"u{i}.wav", espeak_wave(text, "en-us", 22050), 22050, subtype="PCM_16")
        cuts.append(speech_cut(Recording.from_file(root / f"u{i}.wav", recording_id=f"u{i}"), text, "s"))
    CutSet.from_cuts(cuts).to_file(root / "cuts.jsonl.gz")
    return root


def mel_error(codec: VQMelCodec, wave: np.ndarray) -> float:
    with torch.no_grad():
        mel = pad_frames((codec.front(torch.from_numpy(wave)[None]) - codec.mean) / codec.std, 2)
        q, _, _ = codec.model.encode(mel)
        return (codec.model.decode_codes(q) - mel).abs().mean().item()


def test_train_encode_decode(corpus):
    section = train(corpus, 60)
    assert section["checkpoint"] == str(corpus / "exp60" / "vqmel.pt")
    codec = build_codec(section)
    assert isinstance(codec, VQMelCodec)
    assert (codec.sample_rate, codec.codebook_size) == (22050, 16)
    assert codec.frame_rate == pytest.approx(22050 / 512)
    wave = load_audio(corpus / "u0.wav", 22050)[0]
    ids = codec.encode([wave, wave[:3000]])
    assert [len(i) for i in ids] == [-(-(len(wave) // 256) // 2), -(-(3000 // 256) // 2)]
    assert all(i.min() >= 0 and i.max() < 16 for i in ids)
    out = codec.decode([ids[1]])[0]
    assert out.shape == (len(ids[1]) * 512,) and np.isfinite(out).all() and np.abs(out).max() > 1e-3
    # training lowers the reconstruction error of the quantised mel
    untrained = build_codec(train(corpus, 1))
    assert mel_error(codec, wave) < 0.85 * mel_error(untrained, wave)
    with pytest.raises(ValueError, match=r"values must lie in \[0, 16\)"):
        codec.decode([np.array([3, 16])])
    # the loss breakdown of bench codec_resynthesis --stages: as long as the codec's own output
    stages = codec.resynthesis_stages([wave[:3000]])
    assert sorted(stages) == ["unquantised", "vocoder on the mel"]
    assert {k: len(v[0]) for k, v in stages.items()} == {"vocoder on the mel": 3000 // 256 * 256,
                                                         "unquantised": len(ids[1]) * 512}
    assert all(np.isfinite(v[0]).all() for v in stages.values())


def test_speed_perturbation_resamples_each_wave_at_each_speed():
    from dualspeech.tokenizers.codecs.vqmel import perturbed

    wave = np.sin(np.arange(22050) / 5.0).astype(np.float32)
    out = list(perturbed([wave, wave[:11025]], [0.5, 1.0], 22050))
    assert [len(w) for w in out] == [44100, 22050, 22050, 11025]
    assert out[2] is wave


def test_bad_inputs(tmp_path):
    from dualspeech.config import ConfigError
    from dualspeech.tokenizers.codecs.vqmel import VQMelArch, VQMelTrainConfig, train_vqmel

    with pytest.raises(FileNotFoundError, match="train_codec"):
        build_codec({"name": "vqmel", "checkpoint": str(tmp_path / "none.pt")})
    torch.save({"arch": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a vqmel checkpoint"):
        build_codec({"name": "vqmel", "checkpoint": str(tmp_path / "other.pt")})
    with pytest.raises(ConfigError, match="multiple"):
        train_vqmel([np.zeros(22050, np.float32)], VQMelTrainConfig(segment_frames=33), tmp_path / "x.pt")
    with pytest.raises(ConfigError, match="speed_perturb must be positive"):
        train_vqmel([np.zeros(22050, np.float32)], VQMelTrainConfig(speed_perturb=[1.0, 0.0]),
                    tmp_path / "x.pt")
    with pytest.raises(ConfigError, match="num_mels"):
        train_vqmel([np.zeros(22050, np.float32)], VQMelTrainConfig(arch=VQMelArch(n_mels=40)),
                    tmp_path / "x.pt")
