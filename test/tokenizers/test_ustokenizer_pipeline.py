"""USTokenizer end to end on espeak speech with the debug config (random tiny Whisper + random
tiny Llama): training (loss goes down, exact resume), export, extraction (batched == one by one,
sharded, resumable, bad input), and the frontend settings stored in the tokenizer file."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import AudioSource, CutSet, MonoCut, Recording

from dualspeech.audio import load_cut_audio
from dualspeech.bin import extract_ustokens, train_ustokenizer
from dualspeech.data.manifest_io import speech_cut
from dualspeech.tokenizers.ustokenizer import extract
from dualspeech.tokenizers.ustokenizer.checkpoint import load_tokenizer, save_tokenizer
from dualspeech.tokenizers.ustokenizer.config import USTokenizerConfig, VQConfig
from dualspeech.tokenizers.ustokenizer.frontend import num_tokens
from dualspeech.tokenizers.ustokenizer.model import USTokenizer, USTokenizerTraining
from dualspeech.training.checkpoint import latest_checkpoint, load

sys.path.insert(0, str(Path(__file__).parents[1]))
from conftest import espeak_wave  # noqa: E402
from fake_corpora import CONF, make_corpus


def train(exp_dir: Path, data: Path, *extra: str) -> None:
    train_ustokenizer.main(["--conf", CONF, "--exp-dir", str(exp_dir), "--data-dir", str(data),
                            "--train-sets", "toy:train", "--valid-sets", "toy:dev",
                            "--set", "data.max_duration=12.0", *extra])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    exp = tmp_path_factory.mktemp("exp") / "ref"
    train(exp, corpus)
    return exp


def metric(exp: Path, name: str, split: str = "train") -> list[float]:
    rows = [line.split(",") for line in (exp / "log/metrics.csv").read_text().splitlines()[1:]]
    return [float(v) for _, s, n, v in rows if s == split and n == name]


def test_training_loss_goes_down_and_exports(trained):
    loss = metric(trained, "loss")
    assert len(loss) == 4 and loss[-1] < loss[0], loss
    recon = metric(trained, "recon")
    assert recon[-1] < recon[0], recon
    assert metric(trained, "usage", "valid")[0] > 0
    final = json.loads((trained / "valid_final.json").read_text())
    assert {"acc_asr", "acc_asr_shuffled", "acc_asr_nospeech", "recon", "usage"} <= set(final)
    tok = load_tokenizer(trained / "final.pt")
    assert tok.vq.codebook_size == 32 and not tok.cfg.pad_to_30s


def test_resume_after_crash_matches_uninterrupted(trained, corpus, tmp_path, monkeypatch):
    forward = USTokenizerTraining.forward
    calls = {"n": 0}

    def crashing(self, batch, speech_order=None):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt("simulated kill in step 6")
        return forward(self, batch, speech_order)

    monkeypatch.setattr(USTokenizerTraining, "forward", crashing)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, corpus)
    assert latest_checkpoint(tmp_path).name == "step-00000004"
    monkeypatch.setattr(USTokenizerTraining, "forward", forward)
    train(tmp_path, corpus)
    ref = load(latest_checkpoint(trained), "model.pt")
    run = load(latest_checkpoint(tmp_path), "model.pt")
    assert sorted(ref) == sorted(run) and any(k.startswith("tokenizer.vq.") for k in ref)
    assert not any(k.startswith(("tokenizer.frontend.", "llm.")) for k in ref)
    for k in ref:
        assert torch.equal(ref[k], run[k]), k


def bad_inputs(root: Path) -> list:
    """Cuts with defined behaviour: resampled, split, silent, skipped."""
    root.mkdir(parents=True, exist_ok=True)
    speech = espeak_wave("Resample me please.", "en-us", 16000)
    waves = {"sr22k": (espeak_wave("Resample me please.", "en-us", 22050), 22050),
             "sr8k": (espeak_wave("Resample me please.", "en-us", 8000), 8000),
             "silence": (np.zeros(16000, dtype=np.float32), 16000),
             "long31s": (np.concatenate([speech, np.zeros(16000 * 31 - len(speech), np.float32)]), 16000),
             "short": (np.zeros(300, dtype=np.float32), 16000)}
    cuts = []
    for name, (wave, sr) in waves.items():
        path = root / f"{name}.wav"
        sf.write(path, wave, sr, subtype="PCM_16")
        cuts.append(speech_cut(Recording.from_file(path, recording_id=name), "x", "s"))
    # a cut that begins inside a longer recording: its tokens must be read back at its offset
    long_rec = cuts[3].recording
    cuts.append(MonoCut(id="offset", start=0.3, duration=2.0, channel=0, recording=long_rec))
    broken = root / "broken.wav"
    broken.write_text("not audio")
    rec = Recording(id="broken", sources=[AudioSource("file", [0], str(broken))], sampling_rate=16000,
                    num_samples=16000, duration=1.0)
    cuts.append(speech_cut(rec, "x", "s"))
    return cuts


def extract_cmd(trained: Path, in_cuts: Path, out: Path, *extra: str) -> None:
    extract_ustokens.main(["--checkpoint", str(trained / "final.pt"), "--cuts", str(in_cuts),
                           "--out-cuts", str(out), "--storage-dir", str(out.parent / "storage"),
                           "--chunk-size", "3", "--max-duration", "20", *extra])


def test_extraction_sharded_resumable_and_bad_input(trained, corpus, tmp_path, monkeypatch):
    cuts = list(CutSet.from_file(corpus / "cuts/toy_cuts_train.jsonl.gz")) + bad_inputs(tmp_path / "bad")
    in_cuts = tmp_path / "in.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(in_cuts)
    out = tmp_path / "dump" / "out.jsonl.gz"
    storage = tmp_path / "dump" / "storage"

    extract_cmd(trained, in_cuts, out, "--nj", "2", "--job", "0")
    assert not out.exists(), "merged before shard 1 ran"

    real = extract.tokenize_cuts
    batches = {"n": 0}

    def killed_midway(*args, **kw):
        for item in real(*args, **kw):
            yield item
            batches["n"] += 1
            if batches["n"] == 5:
                raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(extract, "tokenize_cuts", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        extract_cmd(trained, in_cuts, out, "--nj", "2", "--job", "1")
    monkeypatch.setattr(extract, "tokenize_cuts", real)
    done_before = sorted(p.name for p in (storage / "parts").glob("*.jsonl.gz"))
    assert not list(storage.rglob(".*tmp*")), "a half-written chunk was left behind"
    extract_cmd(trained, in_cuts, out, "--nj", "2", "--job", "1")
    assert sorted(p.name for p in (storage / "parts").glob("*.jsonl.gz")) != done_before
    result = list(CutSet.from_file(out))

    skipped = dict(line.split("\t") for line in (storage / "skipped.tsv").read_text().splitlines())
    assert skipped == {"short": "too_short", "broken": "unreadable"}
    assert [c.id for c in result] == [c.id for c in cuts]      # input order, skipped ones kept
    result = [c for c in result if c.id not in skipped]
    assert not any(c.has_custom("ustokens") for c in CutSet.from_file(out) if c.id in skipped)
    tok = load_tokenizer(trained / "final.pt")
    identity = json.loads((storage / "meta.json").read_text())["identity"]
    assert identity.startswith("ustokenizer:")
    for cut in result:
        ids = cut.load_ustokens()
        assert ids.dtype == np.int16 and cut.custom["ustokens"].frame_shift == 0.04
        assert cut.custom["ustokens_source"] == identity
        wave = torch.from_numpy(load_cut_audio(cut, 16000))
        assert len(ids) == num_tokens(len(wave)), cut.id
        assert np.array_equal(ids, tok.tokenize([wave])[0].numpy()), cut.id  # batched == alone
    by_id = {c.id: c for c in result}
    assert len(by_id["long31s"].load_ustokens()) == num_tokens(16000 * 31)
    assert abs(len(by_id["sr22k"].load_ustokens()) - len(by_id["sr8k"].load_ustokens())) <= 1

    # a re-run is a no-op: the merged manifest is not even rewritten
    before = out.read_bytes(), out.stat().st_ino, out.stat().st_mtime_ns
    extract_cmd(trained, in_cuts, out, "--nj", "2")
    assert (out.read_bytes(), out.stat().st_ino, out.stat().st_mtime_ns) == before


def test_tokenizer_file_keeps_frontend_settings(tmp_path):
    import shutil

    from dualspeech.pretrained import resolve
    whisper_copy = tmp_path / "whisper.pt"
    shutil.copy(resolve("random:whisper-debug"), whisper_copy)
    cfg = USTokenizerConfig(whisper=str(whisper_copy), pad_to_30s=True, channels=16,
                            vq=VQConfig(codebook_size=8, dim=4))
    from dualspeech.pretrained import load_whisper
    tok = USTokenizer(cfg, load_whisper(str(whisper_copy)))
    tok.vq.initialized.fill_(True)
    state = {f"tokenizer.{k}": v for k, v in tok.state_dict().items() if not k.startswith("frontend.")}
    save_tokenizer(tmp_path / "t.pt", cfg, state, {}, step=1)
    loaded = load_tokenizer(tmp_path / "t.pt")
    assert loaded.frontend.pad_to_30s is True
    assert torch.equal(loaded.vq.codebook, tok.vq.codebook)
    wave = torch.from_numpy(espeak_wave("Hello there.", "en-us", 16000))
    assert torch.equal(loaded.tokenize([wave])[0], tok.eval().tokenize([wave])[0])
    ckpt = torch.load(whisper_copy, weights_only=True)
    ckpt["model_state_dict"]["encoder.ln_post.weight"] += 1.0
    torch.save(ckpt, whisper_copy)
    with pytest.raises(ValueError, match="different Whisper checkpoint"):
        load_tokenizer(tmp_path / "t.pt")


def test_extraction_benchmark_runs(trained, corpus, capsys):
    from dualspeech.bench.ustoken_extraction import run

    run(["--cuts", str(corpus / "cuts/toy_cuts_dev.jsonl.gz"), "--checkpoint",
         str(trained / "final.pt"), "--limit", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 8 and "batched, trimmed" in lines[-2]
    key, value = lines[-1].split("=")
    assert key == "speedup_batched_vs_padded_loop" and float(value) > 0
