"""decode -> score through the entry points: an exported random debug model, the toy token
corpus, all 8 tasks, results.json with every task's metrics."""
import json

import pytest
import yaml

from dualspeech.bin import decode, score
from dualspeech.config import load_yaml
from dualspeech.models.io import export_model
from dualspeech.testing.toy import toy_codec, toy_data, toy_model

SMALL_CODEC = ["model.acoustic_gpt.n_codes=64"]   # a quick k-means for the toy codec


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    model, cfg = toy_model("egs/mini/conf/dualspeechlm_debug.yaml", SMALL_CODEC)
    model_dir = export_model(model, tmp / "model")
    data = toy_data(tmp / "data", cfg, n_per_task=2)
    toy_codec(tmp / "melvq.pt", cfg["model"]["acoustic_gpt"]["n_codes"])
    (tmp / "codec.yaml").write_text(yaml.safe_dump(
        {"codec": {"name": "melvq", "checkpoint": str(tmp / "melvq.pt"), "griffin_lim_iters": 2}}))
    return tmp, model_dir, data


def test_decode_then_score_all_tasks(setup):
    tmp, model_dir, data = setup
    out = tmp / "decode"
    summary = decode.main([
        "--conf", "egs/mini/conf/decode_mini.yaml", "--model", str(model_dir),
        "--data-root", str(data), "--sources", "toy:test", "--out-dir", str(out),
        "--codec-conf", str(tmp / "codec.yaml"),
        "--set", "decode.speech.max_new_tokens=6", "--set", "decode.acoustic.max_len=10",
        "--set", "decode.text.max_new_tokens=5"])
    assert len(summary) == 8 and all(c["merged"] for c in summary.values())
    saved = load_yaml(out / "toy_tts_test" / "decode_config.yaml")
    assert saved["decode"]["speech"]["max_new_tokens"] == 6 and saved["model_path"] == str(model_dir)
    conf = tmp / "score.yaml"
    conf.write_text(yaml.safe_dump({"score": {"n_bootstrap": 20, "dnsmos": False, "asr_max_tokens": 12,
                                              "split_by": {"toy_t2st_test": "source_lang"}}}))
    results = score.main(["--conf", str(conf), "--decode-dir", str(out), "--out-dir", str(tmp / "score")])
    want = {"toy_asr_test": {"wer"}, "toy_s2tt_test": {"bleu"}, "toy_ser_test": {"accuracy", "uar"},
            "toy_sqa_test": {"bleu"}, "toy_tts_test": {"wer"}, "toy_vc_test": {"wer"}, "toy_t2st_test:es": {"bleu"},
            "toy_sc_test": {"bleu"}}
    for name in ("toy_tts_test", "toy_vc_test", "toy_t2st_test:es", "toy_sc_test"):
        want[name] |= {"eoa", "length_ratio"}   # how generation ended, generated / reference length
    assert {k: set(v["metrics"]) for k, v in results.items()} == want
    # the toy corpus has no audio: no speaker prompt to compare with, counted, not hidden
    assert results["toy_tts_test"]["counts"]["sim_skipped"] == 2
    assert results["toy_tts_test"]["counts"]["failed"] == 2     # random model: no end-of-audio
    summary = json.loads((tmp / "score" / "results.json").read_text())
    assert set(summary) == set(want)
