"""Unit-Mel, the codec whose ids carry what is said and whose decoder takes the voice from a
speaker embedding: train_codec trains it (k-means over Whisper encoder features, then the
decoder), ids come at half the HiFi-GAN mel rate, decoding speaks with the embedding it is
given; a checkpoint of other units, a truncated file or embeddings of another size fail clearly;
the shipped asset is intact and fits the demo."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from lhotse import CutSet, Recording

from dualspeech.audio import load_audio
from dualspeech.data.manifest_io import speech_cut
from dualspeech.tokenizers.codecs import build_codec
from dualspeech.tokenizers.codecs.layers import CheckpointError
from dualspeech.tokenizers.codecs.unitmel import UnitMelCodec

TEXTS = ["the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
         "a journey of a thousand miles begins with a single step"]
TINY = ("unitmel_train:\n  arch: {whisper: 'random:whisper-debug', channels: 16, codebook_size: 16,"
        " pre_blocks: 1, post_blocks: 1}\n  batch_size: 4\n  segment_frames: 32\n  lr: 0.003\n")


def train(root, steps: int):
    from dualspeech.bin import train_codec

    conf = root / f"codec{steps}.yaml"
    conf.write_text(f"codec:\n  name: unitmel\n  checkpoint: unused.pt\n{TINY}  steps: {steps}\n")
    resolved = train_codec.main(["--conf", str(conf), "--cuts", str(root / "cuts.jsonl.gz"),
                                 "--out-dir", str(root / f"exp{steps}")])
    return yaml.safe_load(resolved.read_text())["codec"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import soundfile as sf
    from conftest import espeak_wave

    root = tmp_path_factory.mktemp("unitmel")
    cuts = []
    for i, (text, voice) in enumerate(zip(TEXTS, ["en-us", "en-us+f3", "en-gb"])):
        sf.write(root / f"u{i}.wav", espeak_wave(text, voice, 22050), 22050, subtype="PCM_16")
        cuts.append(speech_cut(Recording.from_file(root / f"u{i}.wav", recording_id=f"u{i}"), text, voice))
    CutSet.from_cuts(cuts).to_file(root / "cuts.jsonl.gz")
    return root


@pytest.fixture(scope="module")
def trained(corpus):
    return train(corpus, 40), train(corpus, 1)


def mel_error(codec: UnitMelCodec, wave: np.ndarray, speaker) -> float:
    from dualspeech.tokenizers.codecs.vqmel import pad_frames

    ids = codec.encode([wave])[0]
    with torch.no_grad():
        mel = pad_frames((codec.front(torch.from_numpy(wave)[None]) - codec.mean) / codec.std, 2)
        return (codec._mel(ids, speaker)[..., : mel.shape[-1]] - mel).abs().mean().item()


def test_train_encode_decode(corpus, trained):
    section, first = trained
    codec = build_codec(section)
    assert isinstance(codec, UnitMelCodec)
    assert (codec.sample_rate, codec.codebook_size, codec.frame_rate) == (22050, 16, 22050 / 512)
    assert codec.speaker_identity.startswith("resemblyzer:")
    wave = load_audio(corpus / "u0.wav", 22050)[0]
    ids = codec.encode([wave, wave[:3000]])
    assert [len(i) for i in ids] == [-(-(len(wave) // 256) // 2), -(-(3000 // 256) // 2)]
    assert all(i.min() >= 0 and i.max() < 16 for i in ids)
    assert not np.array_equal(*codec.encode([wave, load_audio(corpus / "u1.wav", 22050)[0][:len(wave)]]))
    # the voice comes from the embedding: another embedding, other samples of the same length
    spk = np.eye(256, dtype=np.float32)[:2]
    a, b, mean_voice = codec.decode([ids[1]] * 3, [spk[0], spk[1], None])
    assert a.shape == b.shape == mean_voice.shape == (len(ids[1]) * 512,)
    assert np.isfinite(a).all() and np.abs(a - b).max() > 1e-4
    assert np.allclose(mean_voice, codec.decode([ids[1]])[0])
    # training lowers the reconstruction error of the decoded mel
    untrained = build_codec(first)
    assert mel_error(codec, wave, None) < mel_error(untrained, wave, None)


def test_bad_speakers_and_ids(trained):
    codec = build_codec(trained[0])
    with pytest.raises(ValueError, match="256 dims, got shape"):
        codec.decode([np.array([1, 2])], [np.zeros(512, np.float32)])
    with pytest.raises(ValueError, match="2 speaker embeddings for 1 id arrays"):
        codec.decode([np.array([1, 2])], [None, None])
    with pytest.raises(ValueError, match=r"values must lie in \[0, 16\)"):
        codec.decode([np.array([3, 16])])


def test_other_units_or_a_damaged_file_are_refused(corpus, trained, tmp_path):
    path = trained[0]["checkpoint"]
    state = torch.load(path, weights_only=True)
    state["whisper"] = "random:whisper-debug@000000000000"      # units of other encoder weights
    torch.save(state, tmp_path / "other.pt")
    codec = build_codec({"name": "unitmel", "checkpoint": str(tmp_path / "other.pt")})
    with pytest.raises(ValueError, match="its units were fitted on random:whisper-debug@000000000000"):
        codec.encode([load_audio(corpus / "u0.wav", 22050)[0]])
    data = open(path, "rb").read()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        build_codec({"name": "unitmel", "checkpoint": str(tmp_path / "cut.pt")})
    del state["model"]["inp.weight"]
    torch.save(state, tmp_path / "arch.pt")
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\) \[inp.weight\]"):
        build_codec({"name": "unitmel", "checkpoint": str(tmp_path / "arch.pt")})


def test_streamed_chunks_speak_with_the_embedding(trained):
    from dualspeech.inference.config import StreamDecoding
    from dualspeech.inference.streaming import ChunkedDecoder

    codec = build_codec(trained[0])
    ids, spk = np.arange(40) % 16, np.eye(256, dtype=np.float32)[3]
    chunks = list(ChunkedDecoder(codec, StreamDecoding(mode="exact"), spk).finish(ids))
    assert len(chunks) > 1
    np.testing.assert_allclose(np.concatenate(chunks), codec.decode([ids], [spk])[0], atol=1e-5)


def test_the_shipped_codec_is_intact_and_fits_the_demo():
    from pathlib import Path

    from dualspeech.config import load_yaml
    from dualspeech.pretrained import resolve
    from dualspeech.pretrained.assets import ASSET_DIR, ASSETS

    sha, card = ASSETS["codec_unitmel.pt"]
    assert resolve("asset:codec_unitmel.pt") == ASSET_DIR / "codec_unitmel.pt"
    assert sha in (ASSET_DIR / card).read_text()
    codec = build_codec({"name": "unitmel", "checkpoint": "asset:codec_unitmel.pt"})
    mini = Path(__file__).resolve().parents[2] / "egs/mini/conf/dualspeechlm_mini.yaml"
    assert codec.codebook_size == load_yaml(mini)["model"]["acoustic_gpt"]["n_codes"]


def test_a_damaged_asset_names_its_sha256(tmp_path, monkeypatch):
    from dualspeech.pretrained import PretrainedNotFound, assets

    monkeypatch.setattr(assets, "ASSET_DIR", tmp_path)
    monkeypatch.setattr(assets, "ASSETS", {"c.pt": ("ab" * 32, "c.md")})
    with pytest.raises(PretrainedNotFound, match="is missing; expected the shipped file with sha256 abab"):
        assets.resolve_asset("c.pt")
    (tmp_path / "c.pt").write_bytes(b"half")
    with pytest.raises(PretrainedNotFound, match="but the shipped file has abab"):
        assets.resolve_asset("c.pt")
    with pytest.raises(PretrainedNotFound, match="unknown shipped asset"):
        assets.resolve_asset("other.pt")
