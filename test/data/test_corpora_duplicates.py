"""Duplicated ids, lone carriage returns and conflicting labels (issue 27 items 4-5): the first
of each id is kept and later ones are counted skips naming file and line, the rest of the corpus
is prepared; a line breaks only at \\n or \\r\\n; an IEMOCAP utterance labelled twice differently
is a counted skip naming both files."""
from __future__ import annotations

from pathlib import Path

from lhotse import CutSet

from dualspeech.bin import prepare_corpus
from fake_corpora import argv_for, skip_log, speech_ids
from fake_corpora import fake_librispeech
from fake_corpora import fake_cvss, fake_iemocap


def cuts_of(out: Path, corpus: str, part: str) -> dict:
    return {c.id: c for c in CutSet.from_file(out / "cuts" / f"{corpus}_cuts_{part}.jsonl.gz")}


def test_librispeech_duplicate_id_and_lone_cr(tmp_path):
    ls = fake_librispeech(tmp_path)
    trans = ls / "test-clean/1089/134686/1089-134686.trans.txt"
    trans.write_bytes(trans.read_bytes().replace(b"STUFF IT", b"STUFF\rIT")
                      + b"1089-134686-0000 A SECOND LINE WITH THE SAME ID\r\n")
    out = tmp_path / "out"
    prepare_corpus.main(["librispeech", "--corpus-dir", str(ls), "--output-dir", str(out)])
    test = cuts_of(out, "librispeech", "test-clean")
    assert test["1089-134686-0000"].supervisions[0].text == "HE HOPED THERE WOULD BE STEW"
    assert test["1089-134686-0001"].supervisions[0].text == "STUFF\rIT INTO YOU"    # not cut short
    assert "103-1240-0000" in cuts_of(out, "librispeech", "train-clean-100")   # the rest prepared
    log = skip_log(out, "librispeech")
    assert f"duplicate id\t{trans}:3 (id 1089-134686-0000; kept the one at {trans}:1)" in log
    assert not [line for line in log.splitlines() if "134686" in line and "missing audio" in line]


def test_covost2_duplicate_row_is_skipped_not_fatal(tmp_path):
    env = fake_cvss(tmp_path)
    release = env["COVOST2"] / "covost_v2.en_de.tsv"
    release.write_text(release.read_text() + "common_voice_en_4.mp3\tSatz noch einmal\ttest\tx\n")
    out = tmp_path / "out"
    prepare_corpus.main(argv_for("covost2", env, out))
    assert "common_voice_en_4" in cuts_of(out, "covost2", "test")     # the first is kept
    assert "common_voice_en_0" in speech_ids(out)                      # the rest is prepared
    assert "duplicate id\tcovost2 test: " in skip_log(out, "covost2")
    assert "(id common_voice_en_4)" in skip_log(out, "covost2")


def test_iemocap_conflicting_labels_name_both_files(tmp_path):
    env = fake_iemocap(tmp_path)
    base = env["IEMOCAP"]
    other = base / "Session1/dialog/EmoEvaluation/Ses01F_impro01_again.txt"
    other.write_text("[0.0000 - 0.9000]\tSes01F_impro01_F000\tang\t[2.5, 2.5, 2.5]\n")
    out = tmp_path / "out"
    prepare_corpus.main(argv_for("iemocap", env, out))
    log = skip_log(out, "iemocap")
    first = base / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    assert (f"conflicting emotion labels\tSes01F_impro01_F000: neu at {first}:1, ang at {other}:1"
            in log)
    assert "Ses01F_impro01_F000" not in speech_ids(out) and "Ses01F_impro01_M001" in speech_ids(out)
    assert log.count("Ses01F_impro01_F000") == 1                      # counted once
