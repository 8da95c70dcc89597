"""The one "is this output up to date" helper (dualspeech.utils.stamp, issue 25 item 9): what
prepared corpora, training shards and token extraction all decide with."""
from __future__ import annotations

import json
import logging
import os

import pytest

from dualspeech.utils.stamp import Stamp, params_digest


def written(tmp_path, name="out.txt", text="data"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_done_needs_same_params_intact_outputs_and_unchanged_inputs(tmp_path, caplog):
    out, src = written(tmp_path), written(tmp_path, "src.txt", "in")
    params = {"seed": 1, "parts": ("a", "b")}           # a tuple reads back as a list: still equal
    stamp = Stamp(tmp_path / ".stamp.json", params)
    assert not stamp.done()                              # no record: a first run
    stamp.write(outputs=[out], read=[src])
    assert stamp.done() and not stamp.done(force=True)
    caplog.set_level(logging.INFO, "dualspeech.utils.stamp")
    assert not Stamp(stamp.path, {**params, "seed": 2}).done()
    assert "parameters changed since the last run (seed)" in caplog.text
    out.write_text("dat!")                               # same size, other content
    assert not stamp.done() and stamp.damaged() == [out.resolve()]
    assert "1 recorded output(s) missing or changed" in caplog.text
    out.write_text("data")
    assert stamp.done()
    src.write_text("input changed")
    assert not stamp.done() and "1 input(s) changed since the last run" in caplog.text


def test_done_with_outputs_requires_exactly_those_files(tmp_path):
    a, b = written(tmp_path, "a"), written(tmp_path, "b")
    stamp = Stamp(tmp_path / "meta.json", {"x": 1})
    stamp.write(outputs=[a])
    assert stamp.done(outputs=[a]) and not stamp.done(outputs=[b])
    assert stamp.previous_outputs() == [a.resolve()]


def test_outputs_outside_the_stamp_dir_are_recorded_relative(tmp_path):
    out = written(tmp_path, "cuts.jsonl")
    stamp = Stamp(tmp_path / "storage" / "meta.json", {"x": 1})
    stamp.write(outputs=[out])
    assert list(json.loads(stamp.path.read_text())["outputs"]) == [os.path.join("..", "cuts.jsonl")]
    assert stamp.done(outputs=[out])


def test_record_without_outputs_is_never_done(tmp_path):
    stamp = Stamp(tmp_path / "meta.json", {"x": 1})
    stamp.write()
    assert json.loads(stamp.path.read_text()) == {"x": 1}    # the parameters at the top level
    assert not stamp.done()


def test_old_layouts_and_unreadable_records_are_changed_not_up_to_date(tmp_path):
    out = written(tmp_path)
    params = {"corpus": "c", "version": 1}
    path = tmp_path / ".c_stamp.json"
    path.write_text(json.dumps({"digest": params_digest(params), "params": params,
                                "outputs": {"out.txt": None}, "read": []}))
    stamp = Stamp(path, params)
    assert not stamp.done() and stamp.changed() == ["corpus", "digest", "params", "version"]
    assert stamp.damaged() == []          # outputs of other parameters are not this run's to re-make
    path.write_text("{truncated")
    assert stamp.saved() is None and not stamp.done()
    assert stamp.claim(False, "x", "y")   # an unreadable record starts afresh, it is not trusted
    stamp.write(outputs=[out])
    assert stamp.done()


def test_claim_keeps_same_refuses_other_and_force_starts_afresh(tmp_path):
    stamp = Stamp(tmp_path / "d" / "writing.json", {"size": 4, "inputs": "abc"})
    assert stamp.claim(False, "shards of other inputs", "rewrite them") is True
    stamp.write()
    assert stamp.claim(False, "shards of other inputs", "rewrite them") is False
    other = Stamp(stamp.path, {"size": 5, "inputs": "abc"})

    class Refused(RuntimeError):
        pass

    with pytest.raises(Refused, match=r"d holds shards of other inputs \(changed: \['size'\]\); "
                                      r"pass --force to rewrite them"):
        other.claim(False, "shards of other inputs", "rewrite them", Refused)
    assert other.claim(True, "shards of other inputs", "rewrite them", Refused) is True


def test_own_keys_cannot_be_parameters(tmp_path):
    with pytest.raises(ValueError, match="outputs"):
        Stamp(tmp_path / "s.json", {"outputs": 1})
