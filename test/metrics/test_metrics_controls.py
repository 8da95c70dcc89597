"""Controls beside each metric: SER chance / majority, other-speaker pairing, control decodes
scored from --control-dir into results.json and RESULTS.md, and the paper's DNSMOS column."""
import json

import pytest
import yaml

from dualspeech.bin import score
from dualspeech.metrics.controls import (CONTROL_LABELS, DECODE_CONTROLS, other_speaker_partners,
                                         ser_controls)
from dualspeech.metrics.paper import paper_value
from dualspeech.metrics.report import markdown_table


def write_hyps(path, records):
    path.mkdir(parents=True)
    (path / "hyp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def rec(i, task, hyp, **ref):
    return {"id": f"{task}-{i}", "task": task, "status": "ok", "text": hyp, "ref": ref}


def test_ser_chance_and_majority_exact():
    refs = ["sad", "happy", "sad", "angry", "sad", "neutral", "happy", "sad"]
    c = ser_controls(refs, n_boot=200, seed=0)
    assert c["accuracy"]["chance"].value == 25.0 and c["uar"]["chance"].value == 25.0
    maj = c["accuracy"]["majority"]
    assert maj.value == pytest.approx(100 * 4 / 8) and maj.ci_low < 50.0 < maj.ci_high


def test_every_control_decode_has_report_words():
    """inference/config.py CONTROLS is the one list: a new control decode needs a label here."""
    assert DECODE_CONTROLS and set(DECODE_CONTROLS) <= set(CONTROL_LABELS)


def test_other_speaker_partners():
    speakers = ["a", "a", "b", None, "c", "b"]
    partners = other_speaker_partners(speakers, seed=0)
    assert partners[3] is None
    for i, j in enumerate(partners):
        if j is not None:
            assert speakers[j] is not None and speakers[j] != speakers[i]
    assert other_speaker_partners(["a", "a"], 0) == [None, None]


def test_control_dir_columns(tmp_path):
    """A model decode and its shuffled-speech control: both scored, the control beside ours."""
    dec, ctl = tmp_path / "decode", tmp_path / "controls"
    refs = ["the cat sat on the mat", "hello world", "good morning everyone"]
    write_hyps(dec / "mini_asr_test", [rec(i, "asr", r, text=r) for i, r in enumerate(refs)])
    shuffled = [rec(i, "asr", refs[(i + 1) % 3], text=r) for i, r in enumerate(refs)]
    shuffled[2].update(status="empty", text="")
    write_hyps(ctl / "shuffled_speech" / "mini_asr_test", shuffled)
    emotions = ["sad", "sad", "happy", "angry"]
    write_hyps(dec / "mini_ser_test", [rec(i, "ser", e, emotion=e) for i, e in enumerate(emotions)])
    write_hyps(ctl / "shuffled_speech" / "mini_ser_test",
               [rec(i, "ser", "sad", emotion=e) for i, e in enumerate(emotions)])
    conf = tmp_path / "score.yaml"
    conf.write_text(yaml.safe_dump({"score": {"n_bootstrap": 100}}))
    out = tmp_path / "scores"
    score.main(["--conf", str(conf), "--decode-dir", str(dec), "--out-dir", str(out),
                "--control-dir", str(ctl)])
    summary = json.loads((out / "results.json").read_text())
    asr = summary["mini_asr_test"]
    assert asr["metrics"]["wer"]["value"] == 0.0
    shuffled = asr["controls"]["wer"]["shuffled_speech"]
    assert shuffled["value"] > 50.0 and shuffled["ci_low"] <= shuffled["value"] <= shuffled["ci_high"]
    ser = summary["mini_ser_test"]["controls"]["accuracy"]
    assert ser["shuffled_speech"]["value"] == 50.0      # "sad" every time: 2 of 4
    assert ser["majority"]["value"] == 50.0 and ser["chance"]["value"] == 25.0
    assert (out / "controls" / "shuffled_speech" / "per_utt" / "mini_asr_test.jsonl").is_file()
    md = (out / "RESULTS.md").read_text()
    assert "controls [95% CI]" in md and "ground truth [95% CI]" in md
    wer_row = next(x for x in md.splitlines() if x.startswith("| mini_asr_test") and "WER" in x)
    assert "| 0.00 [0.00, 0.00] | shuffled " in wer_row
    acc_row = next(x for x in md.splitlines() if "accuracy" in x)
    assert "shuffled 50.00 [" in acc_row and "chance 25.00" in acc_row and "majority 50.00 [" in acc_row
    assert "- shuffled: the trained model with each test example's input speech" in md
    assert "- mini_asr_test [shuffled_speech]: failed=1" in md    # control failures shown too
    assert "- mini_ser_test [shuffled_speech]" not in md
    with pytest.raises(SystemExit, match="does not exist"):
        score.main(["--conf", str(conf), "--decode-dir", str(dec), "--out-dir", str(out),
                    "--control-dir", str(tmp_path / "nope")])


def test_paper_dnsmos_beside_p808_only():
    """The paper's DNSMOS (ground truth 3.86 on LibriTTS test-clean) is P.808, not OVRL."""
    assert paper_value("DualSpeechLM-USToken", "tts_test_clean", "dnsmos_p808") == 3.86
    assert paper_value("Ground truth", "tts_test_clean", "dnsmos_p808") == 3.86
    assert paper_value("DualSpeechLM-USToken", "tts_test_clean", "dnsmos_ovrl") is None
    est = {"value": 3.1, "ci_low": 3.0, "ci_high": 3.2, "n": 2}
    results = {"libritts_tts_test": {"task": "tts", "n": 2, "metrics": {
        "dnsmos_ovrl": est, "dnsmos_p808": est}}}
    md = markdown_table(results, ["DualSpeechLM-USToken"], {"libritts_tts_test": "tts_test_clean"})
    rows = {line.split("|")[4].strip(): line for line in md.splitlines()[2:]}
    assert rows["DNSMOS P.808"].rstrip().endswith("| 3.86 |")
    assert rows["DNSMOS OVRL"].rstrip().endswith("| - |")
