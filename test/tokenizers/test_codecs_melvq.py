"""MelVQ, the offline codec: train_codec on espeak speech, encode gives ceil(T / hop) ids that
are the nearest centroids, decode gives exactly N * hop samples of speech-like audio, bad ids and
checkpoints give clear errors, and extract_acoustic stores the ids as ``acoustic_tokens``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from lhotse import CutSet, Recording

from dualspeech.audio import load_audio, load_cut_audio
from dualspeech.config import ConfigError
from dualspeech.data.manifest_io import speech_cut
from dualspeech.tokenizers.codecs import build_codec
from dualspeech.tokenizers.codecs.melvq import MelVQCodec

TEXTS = ["the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
         "a journey of a thousand miles begins with a single step"]


@pytest.fixture
def trained(tmp_path, make_speech):
    from dualspeech.bin import train_codec

    cuts = [speech_cut(Recording.from_file(make_speech(t, f"u{i}"), recording_id=f"u{i}"), t, "s")
            for i, t in enumerate(TEXTS)]
    CutSet.from_cuts(cuts).to_file(tmp_path / "cuts.jsonl.gz")
    conf = tmp_path / "codec.yaml"
    conf.write_text("codec:\n  name: melvq\n  checkpoint: unused.pt\n  griffin_lim_iters: 8\n"
                    "melvq_train:\n  codebook_size: 32\n  kmeans_iters: 20\n")
    resolved = train_codec.main(["--conf", str(conf), "--cuts", str(tmp_path / "cuts.jsonl.gz"),
                                 "--out-dir", str(tmp_path / "exp")])
    ckpt = tmp_path / "exp" / "melvq.pt"
    assert yaml.safe_load(resolved.read_text())["codec"] == {
        "name": "melvq", "checkpoint": str(ckpt), "griffin_lim_iters": 8}
    return tmp_path, ckpt


def test_encode_decode_round_trip(trained):
    tmp_path, ckpt = trained
    codec = build_codec({"name": "melvq", "checkpoint": str(ckpt), "griffin_lim_iters": 8})
    assert isinstance(codec, MelVQCodec)
    assert (codec.sample_rate, codec.frame_rate, codec.codebook_size) == (16000, 40.0, 32)
    wave = load_audio(tmp_path / "u0.wav", 16000)[0]
    ids = codec.encode([wave, wave[:1000]])
    assert [len(i) for i in ids] == [-(-len(wave) // 400), 3]
    # ids are the nearest centroids of the normalised log-mel frames
    frames = torch.from_numpy(codec.frames(wave))
    np.testing.assert_array_equal(ids[0], torch.cdist(frames, codec.centroids).argmin(1).numpy())
    # a padded batch with lengths gives the same ids as the list
    padded = np.zeros((2, len(wave)), np.float32)
    padded[0], padded[1, :1000] = wave, wave[:1000]
    assert all((a == b).all() for a, b in zip(ids, codec.encode(padded, lengths=[len(wave), 1000])))
    out = codec.decode(ids)
    assert [len(o) for o in out] == [len(ids[0]) * 400, 1200]
    # resynthesis is speech-like: re-encoding the output lands mostly on the same codes
    again = codec.encode([out[0]])[0]
    assert (again == ids[0]).mean() > 0.3, (again == ids[0]).mean()
    assert np.abs(out[0]).max() > 0.01
    with pytest.raises(ValueError, match=r"values must lie in \[0, 32\)"):
        codec.decode([np.array([1, 32])])
    with pytest.raises(ValueError, match="non-empty integer array"):
        codec.decode([np.array([0.5, 1.0])])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        codec.encode([np.zeros((2, 5), np.float32)])


def test_bad_checkpoint_and_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_codec"):
        build_codec({"name": "melvq", "checkpoint": str(tmp_path / "none.pt")})
    torch.save({"centroids": torch.zeros(4, 80)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="missing"):
        build_codec({"name": "melvq", "checkpoint": str(tmp_path / "other.pt")})
    with pytest.raises(ConfigError, match="unknown codec 'soundstream'"):
        build_codec({"name": "soundstream"})
    with pytest.raises(ConfigError):
        build_codec({"name": "melvq", "checkpoint": "x.pt", "bitrate": 6})


def test_extract_acoustic_cli(trained):
    from dualspeech.bin import extract_acoustic

    tmp_path, ckpt = trained
    conf = tmp_path / "resolved.yaml"
    conf.write_text(f"codec:\n  name: melvq\n  checkpoint: {ckpt}\n  griffin_lim_iters: 8\n")
    argv = ["--conf", str(conf), "--cuts", str(tmp_path / "cuts.jsonl.gz"), "--out-cuts",
            str(tmp_path / "out.jsonl.gz"), "--storage-dir", str(tmp_path / "store"), "--chunk-size", "2"]
    assert extract_acoustic.main(argv) == tmp_path / "out.jsonl.gz"
    codec = build_codec({"name": "melvq", "checkpoint": str(ckpt)})
    for cut in CutSet.from_file(tmp_path / "out.jsonl.gz"):
        stored, tokens = cut.acoustic_tokens.load(), cut.load_acoustic_tokens()
        assert stored.dtype == np.int16
        np.testing.assert_array_equal(stored, codec.encode([load_cut_audio(cut, 16000)])[0])
        # lhotse trims to round(duration / frame_shift) frames when loading through the cut
        assert len(stored) - len(tokens) in (0, 1) and (tokens == stored[:len(tokens)]).all()
        assert cut.acoustic_tokens.frame_shift == 0.025
        assert cut.acoustic_tokens_source == codec.identity
    # a finished extraction is reused, not recomputed
    before = sorted(p.stat().st_mtime_ns for p in (tmp_path / "store/parts").iterdir())
    extract_acoustic.main(argv)
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "store/parts").iterdir()) == before
