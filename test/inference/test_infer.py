"""Inference on raw input: the self-contained model dir (hashes, missing parts), the Python API
(all 8 tasks, batched = one at a time, order, bad input) and ``bin/infer`` (single request,
batch mode, resume, exit codes). The model is a random debug DualSpeechLM with a random
USTokenizer, a tone-fitted MelVQ codec and Resemblyzer (dualspeech.testing.toy)."""
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from dualspeech.data.tasks import TASKS
from dualspeech.inference.model_dir import ModelDirError, check_model_dir
from dualspeech.testing.toy import toy_model_dir
from conftest import espeak_wave


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return toy_model_dir(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def ds(model_dir):
    from dualspeech import DualSpeech

    return DualSpeech.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """Speech files in odd formats: 22.05 kHz stereo flac, 8 kHz wav; and bad ones."""
    d = tmp_path_factory.mktemp("audio")
    speech = espeak_wave("the cat sat on the mat", sr=22050)
    sf.write(d / "stereo.flac", np.stack([speech, 0.5 * speech], 1), 22050)
    sf.write(d / "voice.wav", espeak_wave("another voice speaks here", sr=8000, pitch=80), 8000)
    sf.write(d / "question.wav", espeak_wave("what sat on the mat", sr=16000), 16000)
    sf.write(d / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(d / "long.wav", np.full(16000 * 31, 0.01, np.float32), 16000)
    (d / "junk.wav").write_text("not audio")
    return d


def requests_for(audio) -> list[dict]:
    a, v, q = str(audio / "stereo.flac"), str(audio / "voice.wav"), str(audio / "question.wav")
    return [{"task": "asr", "audio": a}, {"task": "s2tt", "audio": a, "target_lang": "de"},
            {"task": "ser", "audio": a}, {"task": "sqa", "audio": a, "question": "what sat?"},
            {"task": "tts", "text": "a red dog", "prompt": v},
            {"task": "t2st", "text": "un perro", "source_lang": "es", "prompt": v},
            {"task": "vc", "audio": a, "prompt": v},
            {"task": "sc", "audio": a, "question_audio": q, "prompt": v}]


def test_model_dir_lists_every_part_and_refuses_changes(model_dir, tmp_path):
    manifest = check_model_dir(model_dir)
    assert set(manifest["parts"]) == {"ustokenizer", "codec", "speaker", "decode"}
    assert manifest["identities"]["llm"].startswith("random:llama-debug@")
    assert manifest["identities"]["speaker"].startswith("resemblyzer:")
    assert "codec/checkpoint/melvq.pt" in manifest["files"]   # copied in, hashed
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "ustokenizer.pt").unlink()
    with open(broken / "extra.safetensors", "ab") as f:
        f.write(b"x")
    with pytest.raises(ModelDirError) as e:
        check_model_dir(broken)
    assert "ustokenizer.pt: missing" in str(e.value)
    assert "extra.safetensors: differs" in str(e.value)
    moved = tmp_path / "otherllm"
    shutil.copytree(model_dir, moved)
    m = json.loads((moved / "model.json").read_text())
    m["identities"]["llm"] = "random:llama-debug@0000"
    (moved / "model.json").write_text(json.dumps(m))
    with pytest.raises(ModelDirError, match="base LLM: exported on random:llama-debug@0000"):
        check_model_dir(moved)
    plain = tmp_path / "plain"
    shutil.copytree(model_dir, plain)
    (plain / "model.json").unlink()
    with pytest.raises(ModelDirError, match="bin.export"):
        check_model_dir(plain)


def test_export_cli_copies_parts_and_checks_training_tokens(model_dir, tmp_path):
    from dualspeech.bin import export

    (tmp_path / "codec.yaml").write_text(
        f"codec:\n  name: melvq\n  checkpoint: {model_dir / 'codec/checkpoint/melvq.pt'}\n")
    (tmp_path / "speaker.yaml").write_text("speaker:\n  name: resemblyzer\n")
    (tmp_path / "meta.json").write_text(json.dumps({"field": "acoustic_tokens",
                                                    "identity": "melvq:other.pt@123"}))
    common = ["--model", str(model_dir), "--ustokenizer", str(model_dir / "ustokenizer.pt"),
              "--codec-conf", str(tmp_path / "codec.yaml"),
              "--speaker-conf", str(tmp_path / "speaker.yaml")]
    with pytest.raises(ModelDirError, match="acoustic_tokens were made by melvq:other.pt@123"):
        export.main([*common, "--out", str(tmp_path / "a"), "--token-meta",
                     str(tmp_path / "meta.json")])
    export.main([*common, "--out", str(tmp_path / "b")])
    manifest = check_model_dir(tmp_path / "b")
    assert set(manifest["parts"]) == {"ustokenizer", "codec", "speaker"}
    assert (manifest["identities"]["codec"]
            == json.loads((model_dir / "model.json").read_text())["identities"]["codec"])


def test_api_all_tasks_batched_equals_single_in_order(ds, audio):
    reqs = requests_for(audio)
    reqs.insert(3, {"task": "asr", "audio": str(audio / "junk.wav")})
    batched = ds.generate(reqs)
    assert [r.task for r in batched] == [r["task"] for r in reqs]
    assert batched[3].status == "invalid" and "cannot read" in batched[3].error
    for req, res in zip(reqs, batched):
        if res.status == "invalid":
            continue
        single = ds.generate([req])[0]
        assert (res.status, res.text, res.n_speech_tokens, res.n_acoustic) == \
            (single.status, single.text, single.n_speech_tokens, single.n_acoustic)
        if TASKS[req["task"]].kind == "understanding":
            assert isinstance(res.text, str)
        else:
            assert res.wave is not None and res.sample_rate == ds.codec.sample_rate
            assert np.allclose(res.wave, single.wave, atol=1e-4)
    wave, sr = sf.read(audio / "stereo.flac")
    assert ds.asr(wave, sr) == batched[0].text
    speech, rate = ds.tts("a red dog", *sf.read(audio / "voice.wav"))
    assert rate == ds.codec.sample_rate and speech.ndim == 1 and len(speech) > 0


@pytest.mark.parametrize("req,reason", [
    ({"task": "asr", "audio": "empty.wav"}, "empty"),
    ({"task": "asr", "audio": "junk.wav"}, "cannot read"),
    ({"task": "asr", "audio": "long.wav"}, "over the 30 s cap"),
    ({"task": "s2tt", "audio": "stereo.flac", "target_lang": "xx"}, "unknown language 'xx'"),
    ({"task": "t2st", "text": "hola", "prompt": "voice.wav"}, "needs 'source_lang'"),
    ({"task": "tts", "text": "word " * 1200, "prompt": "voice.wav"}, "at most 1024"),
    ({"task": "tts", "text": "hi"}, "needs 'prompt'"),
    ({"task": "translate", "text": "hi"}, "unknown task 'translate'"),
])
def test_api_bad_input_is_refused_with_reason(ds, audio, req, reason):
    req = {k: str(audio / v) if k in ("audio", "prompt") else v for k, v in req.items()}
    res = ds.generate([req, {"task": "ser", "audio": str(audio / "stereo.flac")}])
    assert res[0].status == "invalid" and reason in res[0].error
    assert res[1].status != "invalid"   # the other request is decoded


def run_cli(capsys, *args):
    from dualspeech.bin import infer

    code = infer.main(list(map(str, args)))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_single_requests(model_dir, audio, tmp_path, capsys, ds):
    code, out, _ = run_cli(capsys, "--model", model_dir, "--task", "asr", "--audio",
                           audio / "stereo.flac")
    assert code == 0 and out.strip() == ds.asr(*sf.read(audio / "stereo.flac"))
    code, out, _ = run_cli(capsys, "--model", model_dir, "--task", "sqa", "--audio",
                           audio / "stereo.flac", "--question", "what sat?", "--json")
    rec = json.loads(out)
    assert code == 0 and rec["task"] == "sqa" and "text" in rec
    wav = tmp_path / "vc.wav"
    code, out, _ = run_cli(capsys, "--model", model_dir, "--task", "vc", "--audio",
                           audio / "stereo.flac", "--prompt", audio / "voice.wav", "--out", wav,
                           "--json")
    info = sf.info(wav)
    assert code == 0 and info.samplerate == ds.codec.sample_rate and info.frames > 0
    assert json.loads(out)["wav"] == str(wav)
    for args, reason in (((("--audio", audio / "empty.wav")), "empty"),
                         ((("--audio", audio / "long.wav", "--max-audio-seconds", 10)), "10 s cap"),
                         ((("--audio", audio / "junk.wav")), "cannot read"),
                         ((), "needs 'audio' (a speech file) (--audio)")):
        code, out, err = run_cli(capsys, "--model", model_dir, "--task", "asr", *args)
        assert code == 2 and reason in err and out == ""
    code, _, err = run_cli(capsys, "--model", tmp_path, "--task", "asr", "--audio",
                           audio / "stereo.flac")
    assert code == 2 and "model.json" in err


def test_cli_batch_in_order_and_resumable(model_dir, audio, tmp_path, capsys):
    reqs = requests_for(audio)
    for r in reqs:   # paths relative to the list file
        for k in ("audio", "prompt", "question_audio"):
            if k in r:
                r[k] = f"audio/{r[k].rsplit('/', 1)[1]}"
    reqs.insert(2, {"task": "asr", "audio": "audio/missing.wav", "id": "fixme"})
    shutil.copytree(audio, tmp_path / "audio")
    listing = tmp_path / "requests.jsonl"
    listing.write_text("".join(json.dumps(r) + "\n" for r in reqs))
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "--model", model_dir, "--input", listing, "--out-dir", out,
                           "--chunk", 3)
    assert code == 2 and "request fixme" in err and "1 of 9 requests were invalid" in err
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["task"] for r in recs] == [r["task"] for r in reqs]
    assert recs[2]["status"] == "invalid" and recs[0]["id"] == "1"
    for rec in recs:
        if rec["task"] in ("tts", "t2st", "vc", "sc"):
            assert (out / rec["wav"]).is_file()
    shutil.copy(audio / "stereo.flac", tmp_path / "audio" / "missing.wav")   # fix the input
    n_before = len((out / "progress.jsonl").read_text().splitlines())
    code, _, _ = run_cli(capsys, "--model", model_dir, "--input", listing, "--out-dir", out)
    assert code == 0
    assert len((out / "progress.jsonl").read_text().splitlines()) == n_before + 1  # only it
    again = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert again[2]["status"] != "invalid" and again[2]["text"] == recs[0]["text"]
    assert [r for i, r in enumerate(again) if i != 2] == [r for i, r in enumerate(recs) if i != 2]
