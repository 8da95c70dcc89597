"""`python -m dualspeech.bin.score` on hand-made hyp.jsonl files of the understanding tasks."""
import json

import numpy as np
import pytest
import sacrebleu
import yaml

from dualspeech.bin import score


def write_hyps(path, records):
    path.mkdir(parents=True)
    (path / "hyp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def rec(i, task, hyp, status="ok", **ref):
    return {"id": f"{task}-{i}", "task": task, "status": status, "text": hyp, "ref": ref}


@pytest.fixture
def decode_dir(tmp_path):
    d = tmp_path / "decode"
    write_hyps(d / "mini_asr_test", [
        rec(0, "asr", "the cat sat on the mat", text="The cat sat on the mat."),
        rec(1, "asr", "hello word", text="Hello world"),
        rec(2, "asr", "", status="empty", text="good morning everyone"),
    ])
    write_hyps(d / "mini_s2tt_test", [
        rec(0, "s2tt", "Die Katze sitzt auf der Matte.", target_text="Die Katze sitzt auf der Matte."),
        rec(1, "s2tt", "Heute habe ich keine Zeit.", target_text="Ich habe heute keine Zeit."),
    ])
    write_hyps(d / "mini_ser_test", [
        rec(0, "ser", "happy", emotion="happy"), rec(1, "ser", "The emotion is sad.", emotion="angry"),
        rec(2, "ser", "no idea", emotion="sad"), rec(3, "ser", "Neutral", emotion="neutral"),
    ])
    return d


def test_score_understanding_tasks(decode_dir, tmp_path):
    conf = tmp_path / "score.yaml"
    conf.write_text(yaml.safe_dump({"score": {
        "n_bootstrap": 200, "cer": True,
        "paper_systems": ["DualSpeechLM-USToken", "Baseline-Acoustic"],
        "paper_refs": {"mini_asr_test": "asr_test_clean"}}}))
    out = tmp_path / "scores"
    results = score.main(["--conf", str(conf), "--decode-dir", str(decode_dir), "--out-dir", str(out)])
    summary = json.loads((out / "results.json").read_text())
    # ASR: 0 + 1 sub + 3 del over 6 + 2 + 3 words
    asr = summary["mini_asr_test"]
    assert asr["metrics"]["wer"]["value"] == pytest.approx(100 * 4 / 11, abs=1e-3)
    assert asr["counts"] == {"n": 3, "failed": 1}
    lo, hi = asr["metrics"]["wer"]["ci_low"], asr["metrics"]["wer"]["ci_high"]
    assert lo <= asr["metrics"]["wer"]["value"] <= hi and lo < hi
    assert "cer" in asr["metrics"]
    s2tt = summary["mini_s2tt_test"]["metrics"]["bleu"]["value"]
    assert s2tt == pytest.approx(sacrebleu.corpus_bleu(
        ["Die Katze sitzt auf der Matte.", "Heute habe ich keine Zeit."],
        [["Die Katze sitzt auf der Matte.", "Ich habe heute keine Zeit."]]).score, abs=1e-3)
    ser = summary["mini_ser_test"]
    assert ser["metrics"]["accuracy"]["value"] == pytest.approx(50.0, abs=1e-3)
    assert ser["metrics"]["uar"]["value"] == pytest.approx(50.0, abs=1e-3)
    assert ser["counts"]["unparsed"] == 1
    per_utt = [json.loads(x) for x in (out / "per_utt" / "mini_ser_test.jsonl").read_text().splitlines()]
    assert [r["label"] for r in per_utt] == ["happy", "sad", "<unparsed>", "neutral"]
    assert "per_utt" not in asr and len(results["mini_asr_test"]["per_utt"]) == 3
    md = (out / "RESULTS.md").read_text()
    asr_row = next(line for line in md.splitlines() if line.startswith("| mini_asr_test") and "WER" in line)
    assert "4.22" in asr_row and "36.52" in asr_row and "LibriSpeech test-clean" in asr_row
    ser_row = next(line for line in md.splitlines() if "accuracy" in line)
    assert ser_row.rstrip().endswith("| - | - |")   # not a paper test set
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in md
    assert "mini_asr_test: failed=1" in md


def test_score_rejects_bad_inputs(decode_dir, tmp_path):
    conf = tmp_path / "score.yaml"
    conf.write_text(yaml.safe_dump({"score": {"paper_refs": {"mini_asr_test": "no_such_set"}}}))
    with pytest.raises(ValueError, match="not a paper test set"):
        score.main(["--conf", str(conf), "--decode-dir", str(decode_dir), "--out-dir", str(tmp_path / "o")])
    conf.write_text(yaml.safe_dump({"score": {"n_bootsrap": 5}}))
    with pytest.raises(Exception, match="n_bootsrap"):
        score.main(["--conf", str(conf), "--decode-dir", str(decode_dir)])
    with pytest.raises(SystemExit, match="no hyp.jsonl for"):
        conf.write_text("score: {}\n")
        score.main(["--conf", str(conf), "--decode-dir", str(decode_dir), "--test-sets", "nope"])


def test_dnsmos_matches_speechmos_reference(make_speech):
    from speechmos.dnsmos import DNSMOS as Reference

    from dualspeech.audio import load_audio
    from dualspeech.metrics.dnsmos import DNSMOS
    from dualspeech.pretrained import resolve

    model_dir = resolve("dnsmos:speechmos")
    ours = DNSMOS(model_dir)
    ref = Reference(str(model_dir / "sig_bak_ovr.onnx"), str(model_dir / "model_v8.onnx"))
    wave, _ = load_audio(make_speech("the quick brown fox jumps over the lazy dog", sr=16000), 16000)
    got = ours.score_wave(wave)
    want = ref(wave, 16000, False)
    assert got["ovrl"] == pytest.approx(want["ovrl_mos"], abs=1e-4)
    assert got["p808"] == pytest.approx(want["p808_mos"], abs=1e-4)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 3).astype(np.float32)
    assert ours.score_wave(noise)["ovrl"] < got["ovrl"]   # clean speech beats white noise
    with pytest.raises(ValueError, match="empty"):
        ours.score_wave(np.zeros(0, np.float32))
