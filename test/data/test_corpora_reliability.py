"""Bad input never costs good data, and changed inputs never reuse stale outputs (issue 15):
undecodable text lines, skips the docs promise, absolute audio paths, stamps that see the files
read, Libriheavy parts, clear errors for wrong arguments, SC prompts, stale files after a
narrower re-run. The fake corpora are the recipes' ones (test_recipe_corpora.py), in the real
on-disk layouts."""
from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
from pathlib import Path

import pytest
from lhotse import CutSet

from dualspeech.bin import prepare_corpus
from dualspeech.data.corpora import iemocap, libriheavy, librispeech, sc
from fake_corpora import audio, fake_librispeech, sqa_json, write
from fake_corpora import fake_cvss, fake_iemocap, fake_libriheavy, fake_libritts_r, fake_vctk
from fake_corpora import argv_for, skip_log, speech_ids

REPO = Path(__file__).resolve().parents[2]


def all_text(out: Path) -> str:
    return "".join(gzip.open(p, "rt", encoding="utf-8").read() for p in sorted(out.rglob("*.jsonl.gz")))


def inject_bad_byte(path: Path, needle: str) -> int:
    """Put a byte that is not UTF-8 into the line holding ``needle``; returns its line number."""
    gz = path.suffix == ".gz"
    data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    assert needle.encode() in data, (path, needle)
    line = data[:data.index(needle.encode())].count(b"\n") + 1
    data = data.replace(needle.encode(), needle.encode()[:-1] + b"\xff", 1)
    path.write_bytes(gzip.compress(data) if gz else data)
    return line


def ls_env(root: Path) -> dict:
    return {"LIBRISPEECH": fake_librispeech(root), "LIBRISPEECH_SQA": sqa_json(root)}


# corpus -> (builder, skip-log name, file with the bad byte, text on its line, speech cuts lost)
BAD_BYTE = {
    "librispeech": (ls_env, "librispeech", "LIBRISPEECH", "test-clean/1089/134686/1089-134686.trans.txt",
                    "HOPED", {"1089-134686-0000"}),
    "sqa": (ls_env, "librispeech", "LIBRISPEECH_SQA", "", "What did he hope", set()),
    "libritts_r": (fake_libritts_r, "libritts_r", "LIBRITTS_R", "dev-clean/84/121123/84_121123.trans.tsv",
                   "Text 1", {"84_121123_000001_000000"}),
    "covost2": (fake_cvss, "covost2", "COVOST2", "covost_v2.en_de.tsv", "Satz 2",
                {"common_voice_en_2"}),
    "cvss": (fake_cvss, "cvss_c", "COMMONVOICE_ES", "validated.tsv", "frase 1",
             {"cvss_c_es_common_voice_es_1"}),
    "iemocap": (fake_iemocap, "iemocap", "IEMOCAP", "Session1/dialog/transcriptions/Ses01F_impro01.txt",
                "Words 2", {"Ses01F_impro01_F002"}),
    "iemocap_label": (fake_iemocap, "iemocap", "IEMOCAP",
                      "Session2/dialog/EmoEvaluation/Ses02F_impro01.txt", "\tneu", {"Ses02F_impro01_F000"}),
    "libriheavy": (fake_libriheavy, "libriheavy", "LIBRIHEAVY", "libriheavy_cuts_medium.jsonl.gz",
                   '"id": "medium/100/sea_fairies/01_baum_1"', {"medium-100-sea_fairies-01_baum_1"}),
    "vctk": (fake_vctk, "vctk", "VCTK", "txt/p225/p225_003.txt", "Six spoons", {"p225_003"}),
}


@pytest.mark.parametrize("case", sorted(BAD_BYTE))
def test_undecodable_line_is_a_counted_skip_and_the_rest_is_prepared(tmp_path, case):
    build, log_name, var, rel, needle, lost = BAD_BYTE[case]
    corpus = {"sqa": "librispeech", "iemocap_label": "iemocap"}.get(case, case)
    clean_env, bad_env = build(tmp_path / "clean"), build(tmp_path / "bad")
    prepare_corpus.main(argv_for(corpus, clean_env, tmp_path / "out_clean"))
    target = Path(bad_env[var]) / rel if rel else Path(bad_env[var])
    line = inject_bad_byte(target, needle)
    prepare_corpus.main(argv_for(corpus, bad_env, tmp_path / "out_bad"))
    log = skip_log(tmp_path / "out_bad", log_name)
    assert re.search(rf"line not UTF-8\t{re.escape(str(target))}:{line}\b", log), log
    clean, bad = speech_ids(tmp_path / "out_clean"), speech_ids(tmp_path / "out_bad")
    if corpus == "vctk":          # only the utterances the seeded pairs use become cuts
        assert bad and not bad & lost
    else:
        assert bad == clean - lost
    assert "\ufffd" not in all_text(tmp_path / "out_bad")
    if case == "sqa":             # the bad entry is dropped, the others kept
        sqa = CutSet.from_file(tmp_path / "out_bad/tasks/librispeech_sqa_test-clean.jsonl.gz")
        assert [c.id for c in sqa] == ["1089-134686-0001"]


# ---------------------------------------------------------------- skips the docs promise
def test_iemocap_empty_transcript_is_a_counted_skip(tmp_path):
    env = fake_iemocap(tmp_path)
    trans = Path(env["IEMOCAP"]) / "Session1/dialog/transcriptions/Ses01F_impro01.txt"
    trans.write_text(trans.read_text().replace("Words 1.", ""))
    iemocap.prepare_iemocap(env["IEMOCAP"], tmp_path / "out")
    assert "Ses01F_impro01_M001" not in speech_ids(tmp_path / "out")
    assert re.search(r"empty transcript\t.*Ses01F_impro01_M001\.wav", skip_log(tmp_path / "out", "iemocap"))


@pytest.mark.parametrize("corpus", ["librispeech", "libritts_r", "vctk"])
def test_audio_without_transcript_is_counted(tmp_path, corpus):
    env = {"librispeech": ls_env, "libritts_r": fake_libritts_r, "vctk": fake_vctk}[corpus](tmp_path)
    var, rel = {"librispeech": ("LIBRISPEECH", "test-clean/1089/134686/1089-134686-0099.flac"),
                "libritts_r": ("LIBRITTS_R", "dev-clean/84/121123/84_121123_000099_000000.wav"),
                "vctk": ("VCTK", "wav48_silence_trimmed/p225/p225_099_mic2.flac")}[corpus]
    stray = Path(env[var]) / rel
    audio(stray, fmt="FLAC" if stray.suffix == ".flac" else None)
    prepare_corpus.main(argv_for(corpus, env, tmp_path / "out"))
    assert f"audio without transcript\t{stray}" in skip_log(tmp_path / "out", corpus)


# corpus -> (transcript file, utterance id): the transcript is emptied, its audio stays
EMPTIED = {"librispeech": ("test-clean/1089/134686/1089-134686.trans.txt", "1089-134686-0001"),
           "libritts_r": ("dev-clean/84/121123/84_121123.trans.tsv", "84_121123_000001_000000"),
           "vctk": ("txt/p225/p225_002.txt", "p225_002")}


@pytest.mark.parametrize("corpus", sorted(EMPTIED))
def test_empty_transcript_is_one_skip_not_also_audio_without_transcript(tmp_path, corpus):
    env = {"librispeech": ls_env, "libritts_r": fake_libritts_r, "vctk": fake_vctk}[corpus](tmp_path)
    var = {"librispeech": "LIBRISPEECH", "libritts_r": "LIBRITTS_R", "vctk": "VCTK"}[corpus]
    rel, utt = EMPTIED[corpus]
    trans = Path(env[var]) / rel
    if corpus == "vctk":
        trans.write_text("")
    else:
        sep = "\t" if corpus == "libritts_r" else " "
        trans.write_text("".join(f"{utt}\n" if line.startswith(utt + sep) else line
                                 for line in trans.read_text().splitlines(keepends=True)))
    prepare_corpus.main(argv_for(corpus, env, tmp_path / "out"))
    lines = [ln for ln in skip_log(tmp_path / "out", corpus).splitlines()   # SQA: an example's
             if utt in ln and not ln.startswith("SQA ")]                      # own skip
    assert len(lines) == 1 and lines[0].startswith("empty transcript\t"), lines


def test_stereo_audio_is_downmixed_and_counted_once(tmp_path, caplog):
    import logging

    import numpy as np
    import soundfile as sf

    from dualspeech.audio import load_cut_audio

    env = ls_env(tmp_path)
    flacs = [Path(env["LIBRISPEECH"]) / f"test-clean/1089/134686/1089-134686-000{i}.flac"
             for i in (0, 1)]
    for flac in flacs:
        sf.write(flac, np.stack([np.full(8000, 0.5), np.full(8000, -0.1)], 1), 16000)
    with caplog.at_level(logging.INFO):
        prepare_corpus.main(argv_for("librispeech", env, tmp_path / "out"))
    cuts = {c.id: c for c in
            CutSet.from_file(tmp_path / "out/cuts/librispeech_cuts_test-clean.jsonl.gz")}
    np.testing.assert_allclose(load_cut_audio(cuts["1089-134686-0001"], 16000), 0.2, atol=1e-3)  # mean
    notes = [r.getMessage() for r in caplog.records if "multi-channel" in r.getMessage()]
    assert len(notes) == 1 and "2 multi-channel audio files" in notes[0], notes


def test_truncated_flac_is_corrupt_not_kept(tmp_path):
    env = ls_env(tmp_path)
    flac = Path(env["LIBRISPEECH"]) / "test-clean/1089/134686/1089-134686-0001.flac"
    flac.write_bytes(flac.read_bytes()[:len(flac.read_bytes()) // 2])   # header intact, data cut
    prepare_corpus.main(argv_for("librispeech", env, tmp_path / "out"))
    assert "1089-134686-0001" not in speech_ids(tmp_path / "out")
    log = skip_log(tmp_path / "out", "librispeech")
    assert f"corrupt audio\t{flac}" in log and "empty audio" not in log


def empty_flac() -> bytes:
    """A well-formed FLAC file of 0 samples: STREAMINFO only (16 kHz, mono, 16 bit)."""
    packed = (16000 << 44) | (0 << 41) | (15 << 36) | 0
    info = (4096).to_bytes(2, "big") * 2 + bytes(6) + packed.to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info


def test_zero_frame_flac_is_empty_not_corrupt(tmp_path):
    env = ls_env(tmp_path)
    flac = Path(env["LIBRISPEECH"]) / "test-clean/1089/134686/1089-134686-0001.flac"
    flac.write_bytes(empty_flac())
    prepare_corpus.main(argv_for("librispeech", env, tmp_path / "out"))
    assert "1089-134686-0001" not in speech_ids(tmp_path / "out")
    log = skip_log(tmp_path / "out", "librispeech")
    assert f"empty audio\t{flac}" in log and f"corrupt audio\t{flac}" not in log


def test_dangling_symlink_is_logged_under_its_corpus_path(tmp_path):
    env = ls_env(tmp_path)
    flac = Path(env["LIBRISPEECH"]) / "test-clean/1089/134686/1089-134686-0001.flac"
    flac.unlink()
    flac.symlink_to(tmp_path / "elsewhere/gone.flac")
    prepare_corpus.main(argv_for("librispeech", env, tmp_path / "out"))
    log = skip_log(tmp_path / "out", "librispeech")
    assert f"missing audio\t{flac}" in log and "gone.flac" not in log


def test_docs_skip_table_matches_the_reasons_the_code_counts():
    code = "".join(p.read_text() for p in (REPO / "dualspeech/data/corpora").glob("*.py"))
    counted = set(re.findall(r'skips\.add\([^\n]*?,\s*"([^"]+)"\)', code))
    counted |= set(re.findall(r'return "([a-z][a-z ]+ audio)"', code))
    counted.add(re.search(r'NOT_UTF8 = "([^"]+)"', code).group(1))
    docs = (REPO / "docs/data.md").read_text().split("#### Skip reasons", 1)[1].split("\n#", 1)[0]
    documented = set(re.findall(r"^\| `([^`]+)` \|", docs, flags=re.M))
    assert documented == counted, (sorted(documented - counted), sorted(counted - documented))


# ---------------------------------------------------------------- paths and stamps
def test_manifests_from_relative_paths_load_from_another_directory(tmp_path, monkeypatch):
    env = ls_env(tmp_path / "corpora")
    monkeypatch.chdir(tmp_path)
    prepare_corpus.main(["librispeech", "--corpus-dir", os.path.relpath(env["LIBRISPEECH"]),
                         "--output-dir", "data", "--parts", "test-clean"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cuts = CutSet.from_file(tmp_path / "data/cuts/librispeech_cuts_test-clean.jsonl.gz")
    for cut in cuts:
        assert Path(cut.recording.sources[0].source).is_absolute()
        assert cut.load_audio().shape[1] == 8000


def test_stamp_sees_transcripts_and_audio(tmp_path):
    env = fake_iemocap(tmp_path)
    root, out = Path(env["IEMOCAP"]), tmp_path / "out"
    assert iemocap.prepare_iemocap(root, out) is True
    assert iemocap.prepare_iemocap(root, out) is False
    trans = root / "Session1/dialog/transcriptions/Ses01F_impro01.txt"
    trans.write_text(trans.read_text().replace("Words 0.", "Other words."))
    assert iemocap.prepare_iemocap(root, out) is True            # an edited transcript
    train = {c.id: c for c in CutSet.from_file(out / "tasks/iemocap_ser_train.jsonl.gz")}
    assert train["Ses01F_impro01_F000"].custom["text"] == "Other words."
    wav = root / "Session2/sentences/wav/Ses02F_impro01/Ses02F_impro01_M001.wav"
    wav.write_bytes(b"broken")
    assert iemocap.prepare_iemocap(root, out) is True            # a corrupted wav
    assert "Ses02F_impro01_M001" not in speech_ids(out)
    audio(wav)
    assert iemocap.prepare_iemocap(root, out) is True            # ... fixed again
    assert "Ses02F_impro01_M001" in speech_ids(out)
    assert iemocap.prepare_iemocap(root, out) is False


# ---------------------------------------------------------------- Libriheavy
def test_libriheavy_dev_subset_is_its_own_part(tmp_path):
    env = fake_libriheavy(tmp_path)
    heavy, light, out = Path(env["LIBRIHEAVY"]), Path(env["LIBRILIGHT"]), tmp_path / "out"
    shutil.copy(heavy / "libriheavy_cuts_medium.jsonl.gz", heavy / "libriheavy_cuts_dev.jsonl.gz")
    libriheavy.prepare_libriheavy(heavy, out, light, subset="medium")
    train = (out / "tasks/libriheavy_vc_train.jsonl.gz").read_bytes()
    libriheavy.prepare_libriheavy(heavy, out, light, subset="dev")
    assert (out / "tasks/libriheavy_vc_train.jsonl.gz").read_bytes() == train
    assert len(CutSet.from_file(out / "tasks/libriheavy_vc_dev.jsonl.gz")) == 6
    assert libriheavy.prepare_libriheavy(heavy, out, light, subset="medium") is False


def test_librilight_dir_one_level_too_high_is_a_clear_error(tmp_path):
    env = fake_libriheavy(tmp_path / "db")
    # the directory above Libri-Light also holds another corpus whose flacs sit 4 levels deep
    audio(tmp_path / "db/vctk/wav48_silence_trimmed/p225/p225_001_mic2.flac", fmt="FLAC")
    with pytest.raises(SystemExit, match=r"--librilight-dir .* has no medium/"):
        prepare_corpus.main(["libriheavy", "--corpus-dir", str(env["LIBRIHEAVY"]), "--librilight-dir",
                             str(tmp_path / "db"), "--subset", "medium", "--output-dir", str(tmp_path / "o")])


@pytest.mark.parametrize("corpus", ["librispeech", "sc"])
def test_nonexistent_sqa_json_is_a_clear_error(tmp_path, corpus):
    ls = fake_librispeech(tmp_path)
    with pytest.raises(SystemExit, match=r"--sqa-json: .*nope\.json.* do not exist"):
        prepare_corpus.main([corpus, "--corpus-dir", str(ls), "--output-dir", str(tmp_path / "o"),
                             "--sqa-json", str(tmp_path / "nope.json")])


# ---------------------------------------------------------------- SC prompts
@pytest.mark.parametrize("n", range(2, 14))
def test_sc_answer_voices_each_have_another_answer(n):
    dealt = sc.deal_answer_voices([f"u{i}" for i in range(n)], random.Random(n))
    per_voice = {v: list(dealt.values()).count(v) for v in set(dealt.values())}
    assert len(dealt) == n and min(per_voice.values()) >= 2
    assert len(per_voice) == min(len(sc.ANSWER_VOICES), n // 2)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")
def test_sc_keeps_every_good_item(tmp_path):
    """13 good items over 5 small parts (the issue's set lost 4 of 13 to random voices)."""
    ls, ann = tmp_path / "LibriSpeech", []
    sizes = {"dev-clean": 2, "dev-other": 2, "test-clean": 3, "test-other": 3, "train-clean-100": 3}
    for k, (part, n) in enumerate(sizes.items()):
        ids = [f"{k + 1}-{k + 10}-{i:04d}" for i in range(n)]
        write(ls / f"{part}/{k + 1}/{k + 10}/{k + 1}-{k + 10}.trans.txt",
              "".join(f"{u} WORDS NUMBER {i}\n" for i, u in enumerate(ids)))
        for i, u in enumerate(ids):
            audio(ls / f"{part}/{k + 1}/{k + 10}/{u}.flac", fmt="FLAC")
            ann.append({"path": f"/x/LibriSpeech/{part}/{k + 1}/{k + 10}/{u}.flac",
                        "Q": f"Which number {i}?", "text": f"Number {i}.", "task": "QA"})
    js = write(tmp_path / "qa.json", json.dumps(ann))
    sc.prepare_sc(ls, tmp_path / "out", [js], seed=0, num_jobs=2)
    for part, n in sizes.items():
        assert len(CutSet.from_file(tmp_path / f"out/tasks/sc_sc_{part}.jsonl.gz")) == n, part
    assert "SC: no other answer" not in skip_log(tmp_path / "out", "sc")


# ---------------------------------------------------------------- narrower re-runs
def test_rerun_with_fewer_parts_or_without_sqa_removes_stale_files(tmp_path):
    env, out = ls_env(tmp_path), tmp_path / "out"
    ls, ann = env["LIBRISPEECH"], env["LIBRISPEECH_SQA"]
    librispeech.prepare_librispeech(ls, out, sqa_annotations=[ann])
    assert (out / "tasks/librispeech_sqa_test-clean.jsonl.gz").is_file()
    librispeech.prepare_librispeech(ls, out)
    assert not list((out / "tasks").glob("librispeech_sqa_*"))
    assert (out / "tasks/librispeech_asr_train-clean-100.jsonl.gz").is_file()
    librispeech.prepare_librispeech(ls, out, parts=["test-clean"])
    left = sorted(p.name for p in out.rglob("*.jsonl.gz"))
    assert left and all("test-clean" in name for name in left), left


def test_vctk_ids_have_no_mic_suffix(tmp_path):
    env = fake_vctk(tmp_path)
    prepare_corpus.main(argv_for("vctk", env, tmp_path / "out"))
    ids = speech_ids(tmp_path / "out")
    assert ids and all(re.fullmatch(r"p22[56]_00\d", i) for i in ids), ids


# ---------------------------------------------------------------- set names
@pytest.mark.parametrize("name", ["train", "mini:", ":train", "a:b:c"])
def test_set_names_parse_in_one_place(name):
    from dualspeech.data.tasks import parse_set
    assert parse_set("librispeech:train-clean-100") == ("librispeech", "train-clean-100")
    with pytest.raises(ValueError, match="must look like corpus:part"):
        parse_set(name)
