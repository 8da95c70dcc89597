"""check_task_data (recipe stages 2 and 5): broken links and missing tokens are dropped, counted
and listed; the kept examples are written; a set that loses a whole task fails the stage."""
from __future__ import annotations

import pytest
from lhotse import CutSet, MonoCut, Recording
from lhotse.array import Array

from dualspeech.bin import check_task_data
from dualspeech.data.tasks import speech_manifest_name, task_manifest_name


def speech_cut(cut_id: str, tokens: bool) -> MonoCut:
    rec = Recording(id=cut_id, sources=[], sampling_rate=16000, num_samples=16000, duration=1.0)
    custom = None
    if tokens:
        arr = Array(storage_type="numpy_files", storage_path="", storage_key="x.npy", shape=[3])
        custom = {"ustokens": arr, "acoustic_tokens": arr, "speaker_embedding": arr}
    return MonoCut(id=cut_id, start=0, duration=1.0, channel=0, recording=rec, custom=custom)


def example(cut: MonoCut, **custom) -> MonoCut:
    return MonoCut(id=cut.id, start=0, duration=1.0, channel=0, recording=cut.recording,
                   custom=custom)


@pytest.fixture
def data(tmp_path):
    cuts = {i: speech_cut(i, tokens=i != "bare") for i in ("a", "b", "c", "bare")}
    for d in ("cuts", "tasks"):
        (tmp_path / d).mkdir()
    CutSet.from_cuts(cuts.values()).to_file(tmp_path / "cuts" / speech_manifest_name("x", "test"))
    asr = [example(cuts["a"], task="asr", text="hello"), example(cuts["bare"], task="asr", text="hi"),
           example(cuts["b"], task="asr")]                                    # no text: schema
    tts = [example(cuts["a"], task="tts", text="t", links={"speaker_ref": "b"}),
           example(cuts["b"], task="tts", text="t", links={"speaker_ref": "gone"}),
           example(cuts["c"], task="tts", text="t", links={"speaker_ref": "bare"})]
    for task, items in (("asr", asr), ("tts", tts)):
        CutSet.from_cuts(items).to_file(tmp_path / "tasks" / task_manifest_name("x", task, "test"))
    return tmp_path


def run(data, *extra):
    return check_task_data.main(["--sets", "x:test", "--tasks-dir", str(data / "tasks"),
                                 "--cuts-dir", str(data / "cuts"), "--out-dir", str(data / "out"),
                                 "--max-drop-fraction", "1", *extra])


def test_links_and_schema_without_tokens(data):
    result = run(data)
    assert result["rows"] == ["x\ttest\tasr\t2\t3", "x\ttest\ttts\t2\t3"]
    reasons = dict(result["dropped"])
    assert reasons["x:test:asr:b"].startswith("schema:")
    assert reasons["x:test:tts:b"] == "missing speech cut for speaker_ref"
    kept = [c.id for c in CutSet.from_file(data / "out" / task_manifest_name("x", "tts", "test"))]
    assert kept == ["a", "c"]
    assert (data / "out/dropped.tsv").read_text().count("\n") == 2


def test_require_tokens_drops_untokenized_speech(data):
    result = run(data, "--require-tokens")
    reasons = dict(result["dropped"])
    assert reasons["x:test:asr:bare"] == "no ustokens on primary"
    assert reasons["x:test:tts:c"] == "no speaker_embedding on speaker_ref"
    assert "x\ttest\tasr\t1\t3" in result["rows"]


def test_losing_too_much_fails(data):
    with pytest.raises(SystemExit, match="examples dropped"):
        check_task_data.main(["--sets", "x:test", "--tasks-dir", str(data / "tasks"),
                              "--cuts-dir", str(data / "cuts"), "--out-dir", str(data / "o2")])
    with pytest.raises(SystemExit, match="speech cuts .* not found"):
        run(data, "--sets", "x:train")
