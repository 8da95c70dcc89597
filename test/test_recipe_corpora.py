"""Every corpus recipe runs stages 0-2 (link the corpus, prepare manifests, check task data) on
a tiny fake corpus in the corpus's real layout, and a missing corpus is a clear error.

The layouts follow test/test_data_corpora.py (whose LibriSpeech builder and file helpers are
reused); here every file is valid, so each task ends up with examples after stage 2.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from lhotse import CutSet

from test_data_corpora import audio, fake_librispeech, sqa_json, write
from test_recipe_mini import link_recipe


def fake_libritts_r(root: Path) -> dict:
    base = root / "LibriTTS_R"
    for part, spk, ch in (("train-clean-100", "19", "198"), ("dev-clean", "84", "121123"),
                          ("test-clean", "1089", "134686"), ("test-other", "1688", "142285")):
        ids = [f"{spk}_{ch}_00000{i}_000000" for i in range(3)]
        write(base / part / spk / ch / f"{spk}_{ch}.trans.tsv",
              "".join(f"{u}\tText {i}.\tText {i}.\n" for i, u in enumerate(ids)))
        for u in ids:
            audio(base / part / spk / ch / f"{u}.wav", sr=24000)
    return {"LIBRITTS_R": base}


def fake_cvss(root: Path) -> dict:
    cv_en, covost, cvss_c = root / "cv/en", root / "covost", root / "cvss_c"
    splits = ["train", "train", "dev", "dev", "test", "test"]
    clips = [f"common_voice_en_{i}.mp3" for i in range(len(splits))]
    write(cv_en / "validated.tsv", "client_id\tpath\tsentence\n"
          + "".join(f"spk{i % 2}\t{c}\tsentence {i}\n" for i, c in enumerate(clips)))
    for c in clips:
        audio(cv_en / "clips" / c, sr=48000, fmt="MP3")
    write(covost / "covost_v2.en_de.tsv", "path\ttranslation\tsplit\tclient_id\n"
          + "".join(f"{c}\tSatz {i}\t{s}\tx\n" for i, (c, s) in enumerate(zip(clips, splits))))
    dirs = {"COMMONVOICE_EN": cv_en, "COVOST2": covost, "CVSS_C": cvss_c}
    for lang in ("es", "fr"):
        cv = root / f"cv/{lang}"
        write(cv / "validated.tsv", "client_id\tpath\tsentence\n" + "".join(
            f"c\tcommon_voice_{lang}_{i}.mp3\tfrase {i}\n" for i in range(6)))
        for k, split in enumerate(("train", "dev", "test")):
            ids = (2 * k, 2 * k + 1)
            write(cvss_c / f"{lang}-en" / f"{split}.tsv",
                  "".join(f"common_voice_{lang}_{i}.mp3\tsentence {i}\n" for i in ids))
            for i in ids:
                audio(cvss_c / f"{lang}-en" / split / f"common_voice_{lang}_{i}.mp3.wav", sr=24000)
        dirs[f"COMMONVOICE_{lang.upper()}"] = cv
    return dirs


def fake_iemocap(root: Path) -> dict:
    base = root / "IEMOCAP_full_release"
    for s in range(1, 6):
        dialog = f"Ses0{s}F_impro01"
        evals, trans = [], []
        for i, cat in enumerate(("neu", "hap", "sad", "ang")):
            utt = f"{dialog}_{'FM'[i % 2]}00{i}"
            evals += [f"[{i}.0000 - {i}.9000]\t{utt}\t{cat}\t[2.5000, 2.5000, 2.5000]", ""]
            trans.append(f"{utt} [{i:03d}.0000-{i:03d}.9000]: Words {i}.")
            audio(base / f"Session{s}/sentences/wav/{dialog}/{utt}.wav")
        write(base / f"Session{s}/dialog/EmoEvaluation/{dialog}.txt", "\n".join(evals) + "\n")
        write(base / f"Session{s}/dialog/transcriptions/{dialog}.txt", "\n".join(trans) + "\n")
    return {"IEMOCAP": base}


def fake_libriheavy(root: Path) -> dict:
    heavy, light = root / "libriheavy", root / "librilight"
    lines = []
    for rid in ("medium/100/sea_fairies/01_baum", "medium/200/emma/02_austen"):
        n = audio(light / f"{rid}.flac", 6.0, fmt="FLAC")
        rec = {"id": rid, "sources": [{"type": "file", "channels": [0],
                                       "source": f"download/librilight/{rid}.flac"}],
               "sampling_rate": 16000, "num_samples": n, "duration": n / 16000, "channel_ids": [0]}
        for k in range(3):
            sup = {"id": f"{rid}_{k}", "recording_id": rid, "start": 0, "duration": 1.5,
                   "channel": 0, "language": "English", "speaker": rid.split("/")[1],
                   "custom": {"texts": [f"Sentence {k}.", f"SENTENCE {k}"], "pre_texts": ["", ""]}}
            lines.append({"id": f"{rid}_{k}", "start": 2.0 * k, "duration": 1.5, "channel": 0,
                          "supervisions": [sup], "recording": rec, "type": "MonoCut"})
    heavy.mkdir(parents=True)
    with gzip.open(heavy / "libriheavy_cuts_medium.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    return {"LIBRIHEAVY": heavy, "LIBRILIGHT": light}


def fake_vctk(root: Path) -> dict:
    base = root / "VCTK-Corpus-0.92"
    write(base / "speaker-info.txt", "ID  AGE  GENDER  ACCENTS  REGION\n"
          "p225  23  F    English    Southern\np226  22  M    English    Surrey\n")
    for spk in ("p225", "p226"):
        for n, text in (("001", "Please call Stella."), ("002", "Ask her to bring these things."),
                        ("003", "Six spoons of fresh snow peas.")):
            write(base / f"txt/{spk}/{spk}_{n}.txt", text + "\n")
            audio(base / f"wav48_silence_trimmed/{spk}/{spk}_{n}_mic2.flac", sr=48000, fmt="FLAC")
    return {"VCTK": base}


def fake_librispeech_recipe(root: Path) -> dict:
    return {"LIBRISPEECH": fake_librispeech(root), "LIBRISPEECH_SQA": sqa_json(root)}


def fake_all(root: Path) -> dict:
    return {**fake_librispeech_recipe(root / "ls"), **fake_libritts_r(root / "tts"),
            **fake_cvss(root / "cv"), **fake_iemocap(root / "iemocap"),
            **fake_libriheavy(root / "heavy"), **fake_vctk(root / "vctk")}


# recipe -> (builder, extra options, {manifest: at least this many examples})
PREPARED = {"librispeech": ["librispeech", "sc"], "cvss": ["covost2", "cvss"],
            "multitask": ["librispeech", "sc", "covost2", "cvss", "libritts_r", "iemocap",
                          "libriheavy", "vctk"]}   # corpora each recipe's stage 1 prepares
RECIPES = {
    "librispeech": (fake_librispeech_recipe,
                    ["--train-parts", "train-clean-100", "--dev-parts", "", "--test-parts", "test-clean"],
                    {"librispeech_asr_train-clean-100": 3, "librispeech_sqa_test-clean": 2}),
    "libritts_r": (fake_libritts_r, ["--train-parts", "train-clean-100"], {"libritts_r_tts_train-clean-100": 3,
                                         "libritts_r_tts_test-other": 3}),
    "cvss": (fake_cvss, [], {"covost2_s2tt_train": 2, "covost2_s2tt_test": 2,
                             "cvss_c_t2st_train_es": 2, "cvss_c_t2st_test_fr": 2}),
    "iemocap": (fake_iemocap, [], {"iemocap_ser_train": 16, "iemocap_ser_test": 4}),
    "libriheavy": (fake_libriheavy, [], {"libriheavy_vc_train": 6}),
    "vctk": (fake_vctk, [], {"vctk_vc_test": 2}),
    "multitask": (fake_all, [
        "--train-parts", "librispeech:train-clean-100 libritts_r:train-clean-100 covost2:train "
                         "cvss_c:train_es cvss_c:train_fr iemocap:train libriheavy:train",
        "--dev-parts", "", "--test-parts", "librispeech:test-clean sc:test-clean "
                                           "libritts_r:test-clean cvss_c:test_fr vctk:test"],
        {"librispeech_asr_train-clean-100": 3, "sc_sc_test-clean": 1, "libritts_r_tts_test-clean": 3,
         "covost2_s2tt_train": 2, "cvss_c_t2st_test_fr": 2, "iemocap_ser_train": 16,
         "libriheavy_vc_train": 6, "vctk_vc_test": 2}),
}


def linked(root: Path, name: str) -> Path:
    """A scratch copy of the recipe; multitask also needs the corpus recipes it reuses."""
    if name == "multitask":
        for other in set(RECIPES) - {name}:
            link_recipe(root, other)
    return link_recipe(root, name)


def logging_python(recipe: Path) -> Path:
    """A --python that logs each call (to show every stage-1 script goes through it)."""
    wrapper = recipe / "logged_python"
    wrapper.write_text('#!/usr/bin/env bash\necho "$*" >> "$(dirname "$0")/python_calls.log"\n'
                       'exec python "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def run_recipe(recipe: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {
        "LIBRISPEECH", "LIBRISPEECH_SQA", "LIBRITTS_R", "CVSS_C", "COVOST2", "COMMONVOICE_EN",
        "COMMONVOICE_ES", "COMMONVOICE_FR", "IEMOCAP", "LIBRIHEAVY", "LIBRILIGHT", "VCTK"}}
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True,
                          env={**clean, **{k: str(v) for k, v in env.items()}}, timeout=300)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_data_stages_on_fake_corpus(tmp_path, name):
    build, options, expected = RECIPES[name]
    env = build(tmp_path / "corpora")
    recipe = linked(tmp_path, name)
    proc = run_recipe(recipe, env, "--stage", "0", "--stop-stage", "2", "--python",
                      str(logging_python(recipe)), *options)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for stage in ("0 (corpus)", "1 (manifests)", "2 (check)"):
        assert f"stage {stage}: done" in proc.stderr
    calls = (recipe / "python_calls.log").read_text()      # local/data.sh uses --python too
    prepared = re.findall(r"-m dualspeech\.bin\.prepare_corpus (\S+) .*--nj \d", calls)
    assert sorted(prepared) == sorted(PREPARED.get(name, [name])), calls
    for var, path in env.items():                            # stage 0 linked every location
        assert (recipe / "db" / var.lower()).resolve() == Path(path).resolve()
    kept = {}
    for row in (recipe / "data/checked/summary.tsv").read_text().splitlines()[1:]:
        corpus, part, task, k, total = row.split("\t")
        kept[f"{corpus}_{task}_{part}"] = int(k)
        assert k == total                                    # every prepared example is usable
    for manifest, n in expected.items():
        assert kept.get(manifest, 0) >= n, (manifest, kept)
        assert len(CutSet.from_file(recipe / f"data/checked/{manifest}.jsonl.gz")) == kept[manifest]
    again = run_recipe(recipe, env, "--stage", "0", "--stop-stage", "2", *options)
    assert again.returncode == 0 and again.stderr.count("up to date") == 3


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_missing_corpus_is_a_clear_error(tmp_path, name):
    recipe = linked(tmp_path, name)
    proc = run_recipe(recipe, {}, "--stage", "0", "--stop-stage", "0")
    assert proc.returncode == 1
    assert "is not set: put the corpus location in db.sh" in proc.stderr
    assert "README.md shows where to get it and the expected layout" in proc.stderr
    env = {v: tmp_path / "nowhere" for v in ("LIBRISPEECH", "LIBRITTS_R", "CVSS_C", "COVOST2",
                                             "COMMONVOICE_EN", "COMMONVOICE_ES", "COMMONVOICE_FR",
                                             "IEMOCAP", "LIBRIHEAVY", "LIBRILIGHT", "VCTK")}
    proc = run_recipe(recipe, env, "--stage", "0", "--stop-stage", "0")
    assert proc.returncode == 1 and f"={tmp_path / 'nowhere'} (db.sh) does not exist" in proc.stderr


def test_recipe_missing_parts_are_reported_at_stage_1(tmp_path):
    env = fake_librispeech_recipe(tmp_path / "corpora")
    recipe = linked(tmp_path, "librispeech")
    proc = run_recipe(recipe, env, "--stage", "0", "--stop-stage", "2", "--train-parts",
                      "train-clean-100 train-clean-360", "--dev-parts", "dev-other", "--test-parts", "test-clean")
    assert proc.returncode == 1
    assert "stage 1: the prepared data has no librispeech:train-clean-360 librispeech:dev-other" in proc.stderr
    assert f"LIBRISPEECH={env['LIBRISPEECH']}" in proc.stderr and "--train-parts" in proc.stderr
    assert "stage 2 (check)" not in proc.stderr
