"""Control decodes (decode.control) with a random tiny DualSpeechLM on the toy corpus, then
scored: shuffled speech reads another example's speech, the untrained model is the model at
initialisation, resynth decodes the reference codec ids, ground truth is the recording; the
scorer puts each control beside the model's metric."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from dualspeech.inference.controls import (derangement, shuffle_input_speech,
                                           untrained_model)
from dualspeech.testing.toy import toy_codec, toy_data, toy_model
from dualspeech.testing.toy import toy_decode_runner

CONF = "egs/mini/conf/dualspeechlm_debug.yaml"
SMALL_CODEC = ["model.acoustic_gpt.n_codes=64"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model, cfg = toy_model(CONF, SMALL_CODEC)
    codec = toy_codec(tmp_path_factory.mktemp("codec") / "melvq.pt",
                      cfg["model"]["acoustic_gpt"]["n_codes"], griffin_lim_iters=2)
    return model, cfg, codec


def read(path):
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def with_recordings(root, seconds=1.0):
    """Give every toy speech cut a real (tone) recording, as prepared corpora have."""
    from lhotse import CutSet, Recording
    from lhotse.utils import fastcopy

    path = root / "cuts" / "toy_cuts_test.jsonl.gz"
    cuts = []
    for k, cut in enumerate(CutSet.from_file(path)):
        wav = root / "wavs" / f"{cut.id}.wav"
        wav.parent.mkdir(exist_ok=True)
        t = np.arange(int(16000 * seconds)) / 16000
        sf.write(wav, (0.2 * np.sin(2 * np.pi * (150 + 10 * k) * t)).astype(np.float32), 16000)
        rec = Recording.from_file(wav, recording_id=cut.id)
        cuts.append(fastcopy(cut, recording=rec, start=0.0, duration=rec.duration))
    CutSet.from_cuts(cuts).to_file(path)


def test_derangement():
    for n in (2, 3, 10, 33):
        p = derangement(n, seed=n)
        assert sorted(p) == list(range(n)) and not np.any(p == np.arange(n))
    assert list(derangement(10, 1)) == list(derangement(10, 1))
    assert list(derangement(10, 1)) != list(derangement(10, 2))


def test_shuffled_speech_reads_another_examples_speech(setup, tmp_path):
    """Greedy ASR under the control answers example i with what the model says to its donor."""
    from dualspeech.data.dataset import load_examples

    model, cfg, codec = setup
    data = toy_data(tmp_path / "data", cfg, n_per_task=5)
    plain = toy_decode_runner(model, codec)
    plain.decode(data, "toy", "test", "asr", tmp_path / "plain")
    shuffled = toy_decode_runner(model, codec, control="shuffled_speech")
    shuffled.decode(data, "toy", "test", "asr", tmp_path / "ctl")
    exs = sorted(load_examples(data, ["toy:test"], tasks=("asr",))["asr"], key=lambda e: e.id)
    moved = shuffle_input_speech(exs, seed=0)
    a, b = read(tmp_path / "plain" / "toy_asr_test" / "hyp.jsonl"), \
        read(tmp_path / "ctl" / "toy_asr_test" / "hyp.jsonl")
    donor = {ex.id: next(e.id for e in exs if e.speech["primary"] is m.speech["primary"])
             for ex, m in zip(exs, moved)}
    assert all(donor[i] != i for i in donor)
    for i, r in b.items():
        assert r["ref"] == a[i]["ref"]                   # its own reference ...
        assert r["text"] == a[donor[i]]["text"]          # ... the donor's speech


def test_untrained_model_is_the_initialisation(tmp_path):
    model, _ = toy_model(CONF, SMALL_CODEC)
    init = {k: v.clone() for k, v in model.named_parameters() if v.requires_grad}
    with torch.no_grad():
        model.speech_embed.add_(1.0)                     # "training"
    fresh = untrained_model(model)
    for k, v in fresh.named_parameters():
        if k in init:
            assert torch.equal(v, init[k]), k
    assert not torch.equal(fresh.speech_embed, model.speech_embed)


def test_reference_controls_and_scores(setup, tmp_path):
    """resynth / ground truth / untrained decodes of TTS and ASR, scored beside the model."""
    from dualspeech.bin import score

    model, cfg, codec = setup
    data = toy_data(tmp_path / "data", cfg, n_per_task=4)
    with_recordings(data)
    dec, ctl = tmp_path / "decode", tmp_path / "controls"
    for task in ("asr", "tts"):
        toy_decode_runner(model, codec).decode(data, "toy", "test", task, dec)
    toy_decode_runner(model, codec, control="shuffled_speech").decode(data, "toy", "test", "asr",
                                                           ctl / "shuffled_speech")
    for control in ("untrained", "resynth", "ground_truth"):
        toy_decode_runner(model, codec, control=control).decode(data, "toy", "test", "tts", ctl / control)
    toy_decode_runner(model, codec, control="ground_truth").decode(data, "toy", "test", "asr",
                                                        ctl / "ground_truth")
    resynth = read(ctl / "resynth" / "toy_tts_test" / "hyp.jsonl")
    truth = read(ctl / "ground_truth" / "toy_tts_test" / "hyp.jsonl")
    for i, r in resynth.items():
        assert r["status"] == "ok" and r["n_acoustic"] > 0
        wave, sr = sf.read(ctl / "resynth" / "toy_tts_test" / r["wav"])
        assert sr == codec.sample_rate and len(wave) > 0
        assert truth[i]["status"] == "ok" and truth[i]["prompt_wav"].startswith("prompt/")
        assert truth[i]["prompt_speaker"].startswith("spk")
    asr_truth = read(ctl / "ground_truth" / "toy_asr_test" / "hyp.jsonl")
    assert all("wav" in r and "text" not in r for r in asr_truth.values())

    conf = tmp_path / "score.yaml"
    conf.write_text(yaml.safe_dump({"score": {"n_bootstrap": 50, "dnsmos": False,
                                          "asr_max_tokens": 16}}))   # tones: no long hallucinations
    out = tmp_path / "scores"
    score.main(["--conf", str(conf), "--decode-dir", str(dec), "--out-dir", str(out),
                "--control-dir", str(ctl), "--samples-html", str(out / "samples.html"),
                "--samples-per-set", "2", "--data-root", str(data)])
    summary = json.loads((out / "results.json").read_text())
    asr, tts = summary["toy_asr_test"], summary["toy_tts_test"]
    assert set(asr["controls"]["wer"]) == {"shuffled_speech"}
    assert asr["ground_truth"]["wer"]["n"] == 4           # the scorer read the test speech
    assert set(tts["controls"]["wer"]) == {"untrained", "resynth"}
    assert {"wer", "sim"} <= set(tts["ground_truth"])
    assert "other_speaker" in tts["controls"]["sim"]
    for est in tts["controls"]["wer"].values():
        assert est["value"] >= 0 and est["ci_low"] <= est["value"] <= est["ci_high"]
    md = (out / "RESULTS.md").read_text()
    row = next(x for x in md.splitlines() if x.startswith("| toy_tts_test") and "WER" in x)
    assert "untrained " in row and "resynth " in row
    check_samples_page(out / "samples.html", tmp_path / "moved")


def check_samples_page(page, moved):
    """2 ASR rows x 1 input + 2 TTS rows x (prompt, reference, generated, resynth, untrained)
    players, each pointing at a clip next to the page; it renders in headless Chromium after
    the directory is moved."""
    import re
    import shutil
    import subprocess

    text = page.read_text()
    srcs = re.findall(r"<audio [^>]*src='([^']+)'", text)
    assert len(srcs) == 2 * 1 + 2 * 5
    assert all(not s.startswith("/") and (page.parent / s).is_file() for s in srcs)
    shutil.copytree(page.parent, moved)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (tools/install.sh installs it with apt): "
                    "the samples.html rendering check did not run")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", (moved / "samples.html").as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rendered = re.findall(r"<audio [^>]*src=\"([^\"]+)\"", dom)
    assert len(rendered) == len(srcs) and "<table>" in dom
    assert all((moved / s).is_file() for s in rendered)


def test_decode_cli_control(tmp_path):
    """bin.decode with +decode.control: an exported model, only the tasks the control applies
    to; an unknown control is refused naming the choices."""
    from dualspeech.bin import decode
    from dualspeech.models.io import export_model

    model, cfg = toy_model(CONF, SMALL_CODEC)
    model_dir = export_model(model, tmp_path / "model")
    data = toy_data(tmp_path / "data", cfg, n_per_task=2)
    common = ["--conf", "egs/mini/conf/decode_mini.yaml", "--model", str(model_dir),
              "--data-root", str(data), "--sources", "toy:test", "--tasks", "asr", "ser", "tts"]
    summary = decode.main(common + ["--out-dir", str(tmp_path / "shuffled"),
                                    "--set", "+decode.control=shuffled_speech",
                                    "--set", "decode.text.max_new_tokens=4"])
    assert sorted(summary) == ["toy_asr_test", "toy_ser_test"]      # understanding only
    assert decode.main(common[:-3] + ["s2tt", "--out-dir", str(tmp_path / "u"),
                                      "--set", "+decode.control=untrained"]) == {}
    with pytest.raises(ValueError, match="decode.control='bogus'"):
        decode.main(common + ["--out-dir", str(tmp_path / "b"), "--set", "+decode.control=bogus"])


def test_reference_failure_is_recorded_per_example(setup, tmp_path, monkeypatch):
    """A codec that cannot decode the reference ids fails those examples, not the run."""
    model, cfg, codec = setup
    data = toy_data(tmp_path / "data", cfg, n_per_task=3)
    dec = toy_decode_runner(model, codec, control="resynth")

    def broken(ids, speakers=None):
        raise RuntimeError("bad ids")

    monkeypatch.setattr(dec.generator.codec, "decode", broken)
    counts = dec.decode(data, "toy", "test", "tts", tmp_path / "out")
    recs = read(tmp_path / "out" / "toy_tts_test" / "hyp.jsonl")
    assert counts["merged"] and counts["error"] == 3
    assert all(r["status"] == "error" and "bad ids" in r["error"] for r in recs.values())


def test_speech_is_decoded_with_the_prompt_speaker(setup, tmp_path, monkeypatch):
    """A speaker-conditioned codec (Unit-Mel) is given each example's prompt embedding, for the
    model's speech and for the resynth control alike."""
    model, cfg, codec = setup
    data = toy_data(tmp_path / "data", cfg, n_per_task=3)
    original, seen = codec.decode, {}

    def recording(ids, speakers=None):
        seen.setdefault(path, []).extend(speakers)
        return original(ids)

    for path in ("model", "resynth"):
        dec = toy_decode_runner(model, codec, **({"control": path} if path != "model" else {}))
        monkeypatch.setattr(dec.generator.codec, "decode", recording)
        dec.decode(data, "toy", "test", "tts", tmp_path / path)
    assert len(seen["resynth"]) == 3 and seen["model"]
    resynth = {tuple(np.round(s, 5)) for s in seen["resynth"]}
    assert len(resynth) > 1, "the examples' prompts have different speakers"
    assert all(s is not None and tuple(np.round(s, 5)) in resynth for s in seen["model"])
