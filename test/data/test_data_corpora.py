"""Each real-corpus preparer on a tiny fake corpus in the corpus's REAL layout, with a corrupt
audio file and a missing/empty label, checking manifests, the task schema, skips and re-runs."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from lhotse import CutSet

from dualspeech.bin import prepare_corpus
from dualspeech.data.corpora import covost2, cvss, iemocap, libriheavy, librispeech, libritts_r, sc, vctk
from dualspeech.data.corpora.common import CorpusLayoutError
from dualspeech.data.tasks import speech_cut_ids, validate_example
from fake_corpora import audio, corrupt, fake_librispeech, sqa_json, write


def load(out: Path, corpus: str, kind: str, part: str) -> list:
    name = f"cuts/{corpus}_cuts_{part}" if kind == "cuts" else f"tasks/{corpus}_{kind}_{part}"
    return list(CutSet.from_file(out / f"{name}.jsonl.gz"))


def check_examples(out: Path, corpus: str, task: str, part: str) -> list:
    speech = {c.id: c for c in load(out, corpus, "cuts", part)}
    examples = load(out, corpus, task, part)
    for ex in examples:
        assert validate_example(ex).name == task
        assert all(cid in speech for cid in speech_cut_ids(ex).values())
    return examples


def skipped(out: Path, corpus: str) -> str:
    return (out / f"skipped_{corpus}.log").read_text()


# ---------------------------------------------------------------- LibriSpeech (+ SQA) and SC


def test_librispeech_asr_and_sqa(tmp_path):
    ls, ann, out = fake_librispeech(tmp_path), sqa_json(tmp_path), tmp_path / "data"
    argv = ["librispeech", "--corpus-dir", str(ls), "--output-dir", str(out), "--sqa-json", str(ann)]
    prepare_corpus.main(argv)
    asr = check_examples(out, "librispeech", "asr", "train-clean-100")
    assert sorted(c.id for c in asr) == ["103-1240-0000", "103-1240-0001", "19-198-0000"]
    assert asr[0].custom["text"] == "CHAPTER ONE MISSUS RACHEL" and asr[0].supervisions[0].speaker == "103"
    sqa = check_examples(out, "librispeech", "sqa", "train-clean-100")
    assert [(c.id, c.custom["question"], c.custom["answer"]) for c in sqa] == \
        [("103-1240-0000", "Who is named?", "Missus Rachel.")]
    assert len(check_examples(out, "librispeech", "sqa", "test-clean")) == 2
    log = skipped(out, "librispeech")
    for reason in ("empty transcript\t", "missing audio\t", "corrupt audio\t",
                   "second SQA question", "without question or answer"):
        assert reason in log, reason
    assert "19-198-0001.flac" in log
    stamp = (out / ".librispeech_stamp.json").stat().st_mtime_ns
    assert librispeech.prepare_librispeech(ls, out, sqa_annotations=[ann]) is False  # no-op
    assert (out / ".librispeech_stamp.json").stat().st_mtime_ns == stamp
    write(ls / "test-clean/1089/134686/1089-134686.trans.txt", "1089-134686-0000 CHANGED TEXT\n")
    assert librispeech.prepare_librispeech(ls, out, sqa_annotations=[ann]) is True   # input changed


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")
def test_sc_synthesises_question_and_answer(tmp_path):
    ls, ann, out = fake_librispeech(tmp_path), sqa_json(tmp_path), tmp_path / "data"
    assert sc.prepare_sc(ls, out, [ann], seed=1) is True
    examples = check_examples(out, "sc", "sc", "test-clean")
    assert len(examples) == 2
    speech = {c.id: c for c in load(out, "sc", "cuts", "test-clean")}
    for ex in examples:
        links = ex.custom["links"]
        answer, ref = speech[links["target"]], speech[links["speaker_ref"]]
        assert answer.supervisions[0].text == ex.custom["answer"]
        assert speech[links["question"]].supervisions[0].text == ex.custom["question"]
        assert ref.supervisions[0].speaker == answer.supervisions[0].speaker and ref.id != answer.id
        assert answer.load_audio().shape[1] > 8000 and answer.sampling_rate == 16000
    # train-clean-100 has one usable QA only: its answer voice has no other answer for a prompt
    assert "SC: no other answer" in skipped(out, "sc")
    assert sc.prepare_sc(ls, out, [ann.parent], seed=1) is False   # a directory of *.json: same files


# ---------------------------------------------------------------- LibriTTS-R
def test_libritts_r_tts_prefix_and_prompts(tmp_path):
    root, out = tmp_path / "LibriTTS_R", tmp_path / "data"
    write(root / "SPEAKERS.txt", ";ID  |SEX| SUBSET |MINUTES| NAME\n84   | F | dev-clean | 8.02 | Christie\n")
    d = root / "dev-clean/84/121123"
    ids = [f"84_121123_00000{i}_000000" for i in range(4)]
    write(d / "84_121123.trans.tsv", "".join(f"{u}\tText {i}.\tText {i}.\n" for i, u in enumerate(ids))
          + "84_121123_000009_000000\t\t\n")
    for u in ids[:3]:
        audio(d / f"{u}.wav", sr=24000)
    corrupt(d / f"{ids[3]}.wav")
    d2 = root / "dev-clean/174/50561"
    write(d2 / "174_50561.trans.tsv", "174_50561_000001_000000\tAlone.\tAlone.\n")
    audio(d2 / "174_50561_000001_000000.wav", sr=24000)
    libritts_r.prepare_libritts_r(root, out)
    assert (out / "manifests/libritts_r_recordings_dev-clean.jsonl.gz").is_file()
    assert not list((out / "manifests").glob("libritts_recordings*"))
    tts = check_examples(out, "libritts_r", "tts", "dev-clean")
    assert sorted(c.id for c in tts) == ids[:3]
    for ex in tts:
        assert ex.custom["links"]["speaker_ref"] in ids[:3] and ex.custom["links"]["speaker_ref"] != ex.id
    genders = {c.supervisions[0].speaker: c.supervisions[0].gender
               for c in load(out, "libritts_r", "cuts", "dev-clean")}
    assert genders == {"84": "F", "174": None}
    log = skipped(out, "libritts_r")
    assert "corrupt audio" in log and "empty transcript" in log and "no other utterance" in log


# ---------------------------------------------------------------- CoVoST 2 and CVSS-C
def test_covost2_s2tt_over_mp3(tmp_path):
    cv, out = tmp_path / "cv-corpus-4/en", tmp_path / "data"
    clips = {f"common_voice_en_{i}.mp3": f"sentence number {i}" for i in range(1, 7)}
    write(cv / "validated.tsv", "client_id\tpath\tsentence\tup_votes\n" + "".join(
        f"spk{i % 2}\t{p}\t{s}\t2\n" for i, (p, s) in enumerate(clips.items()) if "6" not in p))
    for p in list(clips)[:5]:
        audio(cv / "clips" / p, sr=48000, fmt="MP3")
    corrupt(cv / "clips/common_voice_en_5.mp3")
    split = ["train", "train_covost", "dev", "test", "test", "train"]
    rows = [(p, f"Satz {i}" if i != 4 else "", s) for i, (p, s) in enumerate(zip(clips, split), 1)]
    write(cv / "covost_v2.en_de.tsv", "path\ttranslation\tsplit\tclient_id\n"
          + "".join(f"{p}\t{t}\t{s}\tx\n" for p, t, s in rows))
    covost2.prepare_covost2(cv, out)
    train = check_examples(out, "covost2", "s2tt", "train")
    assert [c.id for c in train] == ["common_voice_en_1", "common_voice_en_2"]
    ex = train[0]
    assert (ex.custom["source_text"], ex.custom["target_text"]) == ("sentence number 1", "Satz 1")
    assert (ex.custom["source_lang"], ex.custom["target_lang"]) == ("en", "de")
    assert ex.load_audio().shape[1] > 10000   # mp3 decoded by libsndfile, no torchaudio
    assert [c.id for c in check_examples(out, "covost2", "s2tt", "dev")] == ["common_voice_en_3"]
    assert not (out / "tasks/covost2_s2tt_test.jsonl.gz").exists()   # every test clip was bad
    log = skipped(out, "covost2")
    assert "empty transcript or translation" in log and "corrupt audio" in log
    assert "not in Common Voice validated.tsv" in log
    # the split files written by CoVoST's get_covost_splits.py are read as they are
    splits = tmp_path / "covost_splits"
    for split, clip in (("train", 1), ("dev", 3), ("test", 2)):
        write(splits / f"covost_v2.en_de.{split}.tsv", "path\tsentence\ttranslation\tclient_id\n"
              f"common_voice_en_{clip}.mp3\tsplit {clip}\tTeil {clip}\tx\n")
    covost2.prepare_covost2(cv, tmp_path / "data2", covost_dir=splits)
    test = check_examples(tmp_path / "data2", "covost2", "s2tt", "test")
    assert [(c.id, c.custom["target_text"]) for c in test] == [("common_voice_en_2", "Teil 2")]


def test_cvss_t2st(tmp_path):
    root, cv, out = tmp_path / "cvss_c", tmp_path / "cv/es", tmp_path / "data"
    write(cv / "validated.tsv", "client_id\tpath\tsentence\n" + "".join(
        f"c\tcommon_voice_es_{i}.mp3\tfrase {i}\n" for i in range(5)))
    for split, ids in (("train", [0, 1, 2, 9]), ("dev", [3]), ("test", [4])):
        write(root / "es-en" / f"{split}.tsv", "".join(f"common_voice_es_{i}.mp3\tsentence {i}\n"
                                                       for i in ids))
        for i in ids:
            audio(root / "es-en" / split / f"common_voice_es_{i}.mp3.wav", sr=24000)
    corrupt(root / "es-en/train/common_voice_es_2.mp3.wav")
    with pytest.raises(CorpusLayoutError, match="--cv-dir es=DIR"):
        cvss.prepare_cvss(root, out, {}, langs=["es"])
    cvss.prepare_cvss(root, out, {"es": cv}, langs=["es"])
    t2st = check_examples(out, "cvss_c", "t2st", "train_es")
    assert [c.id for c in t2st] == ["cvss_c_es_common_voice_es_0", "cvss_c_es_common_voice_es_1"]
    assert (t2st[0].custom["source_text"], t2st[0].custom["target_text"]) == ("frase 0", "sentence 0")
    assert t2st[0].custom["links"]["speaker_ref"] == t2st[1].id
    log = skipped(out, "cvss_c")
    assert "no source text in validated.tsv" in log and "corrupt audio" in log
    assert "no other utterance" in log      # dev and test have a single utterance each


# ---------------------------------------------------------------- IEMOCAP
def test_iemocap_four_classes_and_sessions(tmp_path):
    root, out = tmp_path / "IEMOCAP_full_release", tmp_path / "data"
    labels = {"neu": "neutral", "exc": "happy", "fru": None, "ang": "angry"}
    for s in range(1, 6):
        dialog = f"Ses0{s}F_impro01"
        evals, trans = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""], []
        for i, cat in enumerate(labels):
            utt = f"{dialog}_{'FM'[i % 2]}00{i}"
            evals += [f"[{i}.0000 - {i}.9000]\t{utt}\t{cat}\t[2.5000, 2.5000, 2.5000]",
                      "C-E2:\tNeutral;\t()", ""]
            trans.append(f"{utt} [{i:03d}.0000-{i:03d}.9000]: Words {i}.")
            audio(root / f"Session{s}/sentences/wav/{dialog}/{utt}.wav")
        write(root / f"Session{s}/dialog/EmoEvaluation/{dialog}.txt", "\n".join(evals) + "\n")
        write(root / f"Session{s}/dialog/transcriptions/{dialog}.txt", "\n".join(trans) + "\n")
        audio(root / f"Session{s}/sentences/wav/{dialog}/{dialog}_M099.wav")   # no label
    corrupt(root / "Session2/sentences/wav/Ses02F_impro01/Ses02F_impro01_M003.wav")
    iemocap.prepare_iemocap(root, out)
    train = check_examples(out, "iemocap", "ser", "train")
    test = check_examples(out, "iemocap", "ser", "test")
    assert len(train) == 4 * 3 - 1 and len(test) == 3
    assert {c.id[:5] for c in test} == {"Ses05"} and "Ses05" not in {c.id[:5] for c in train}
    by_id = {c.id: c for c in train}
    assert by_id["Ses01F_impro01_M001"].custom["emotion"] == "happy"     # excited -> happy
    assert by_id["Ses01F_impro01_F000"].custom["text"] == "Words 0."
    assert by_id["Ses01F_impro01_M001"].supervisions[0].speaker == "Ses01M"
    log = skipped(out, "iemocap")
    assert log.count("missing emotion label") == 5 and log.count("outside the 4-class") == 5
    assert "corrupt audio" in log


# ---------------------------------------------------------------- Libriheavy
def test_libriheavy_rebase_and_subset(tmp_path):
    heavy, light, out = tmp_path / "libriheavy", tmp_path / "librilight", tmp_path / "data"
    recs = {"small/100/sea_fairies/01_baum": 12.0, "small/200/emma/02_austen": 8.0,
            "small/300/gone/03_missing": 4.0}
    lines = []
    for rid, dur in recs.items():
        n = int(dur * 16000) if "missing" in rid else audio(light / f"{rid}.flac", dur, fmt="FLAC")
        for k in range(int(dur // 2)):
            cid = f"{rid}_{k}"
            text = "" if (rid.startswith("small/200") and k == 0) else f"Sentence {k} of {rid}."
            sup = {"id": cid, "recording_id": rid, "start": 0, "duration": 1.5, "channel": 0,
                   "language": "English", "speaker": rid.split("/")[1],
                   "custom": {"texts": [text, text.upper()], "pre_texts": ["", ""]}}
            rec = {"id": rid, "sources": [{"type": "file", "channels": [0],
                                           "source": f"download/librilight/{rid}.flac"}],
                   "sampling_rate": 16000, "num_samples": n, "duration": n / 16000, "channel_ids": [0]}
            lines.append({"id": cid, "start": 2.0 * k, "duration": 1.5, "channel": 0,
                          "supervisions": [sup], "recording": rec, "type": "MonoCut"})
    heavy.mkdir()
    with gzip.open(heavy / "libriheavy_cuts_small.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    libriheavy.prepare_libriheavy(heavy, out, light, hours=1.0)
    vc = check_examples(out, "libriheavy", "vc", "train")
    cuts = load(out, "libriheavy", "cuts", "train")
    assert len(cuts) == 6 + 3 and len(vc) == 9          # 6 of spk 100, 3 of spk 200
    ex = vc[0]
    assert ex.custom["links"]["target"] == ex.id and "/" not in ex.id
    ref = {c.id: c for c in cuts}[ex.custom["links"]["speaker_ref"]]
    assert ref.supervisions[0].speaker == ex.supervisions[0].speaker and ref.id != ex.id
    assert Path(ex.recording.sources[0].source) == light / "small/100/sea_fairies/01_baum.flac"
    assert ex.load_audio().shape == (1, 24000)
    log = skipped(out, "libriheavy")
    assert "missing audio" in log and "empty transcript" in log
    a = libriheavy.select_subset(heavy / "libriheavy_cuts_small.jsonl.gz", 8 / 3600, seed=3)
    assert a == libriheavy.select_subset(heavy / "libriheavy_cuts_small.jsonl.gz", 8 / 3600, seed=3)
    assert 5 <= len(a) <= 6 and a != libriheavy.select_subset(
        heavy / "libriheavy_cuts_small.jsonl.gz", 8 / 3600, seed=4)


# ---------------------------------------------------------------- VCTK
def test_vctk_vc_pairs(tmp_path):
    root, out = tmp_path / "VCTK-Corpus-0.92", tmp_path / "data"
    write(root / "speaker-info.txt", "ID  AGE  GENDER  ACCENTS  REGION COMMENTS \n"
          "p225  23  F    English    Southern  England\np226  22  M    English    Surrey\n"
          "p227  38  M    English    Cumbria\n")
    for spk in ("p225", "p226", "p227"):
        write(root / f"txt/{spk}/{spk}_001.txt", "Please call Stella.\n")
        write(root / f"txt/{spk}/{spk}_002.txt", "Ask her to bring these things with her from the store.\n")
        write(root / f"txt/{spk}/{spk}_010.txt", f"A sentence only {spk} reads.\n")
        for n in ("001", "002", "010"):
            audio(root / f"wav48_silence_trimmed/{spk}/{spk}_{n}_mic2.flac", sr=48000, fmt="FLAC")
    corrupt(root / "wav48_silence_trimmed/p227/p227_002_mic2.flac")
    write(root / "txt/p227/p227_011.txt", "  \n")
    vctk.prepare_vctk(root, out, num_pairs=4, seed=0)
    pairs = check_examples(out, "vctk", "vc", "test")
    assert len(pairs) == 4 and len({p.id for p in pairs}) == 4
    speech = {c.id: c for c in load(out, "vctk", "cuts", "test")}
    for ex in pairs:
        tgt, ref = speech[ex.custom["links"]["target"]], speech[ex.custom["links"]["speaker_ref"]]
        assert tgt.supervisions[0].text == ex.supervisions[0].text
        assert tgt.supervisions[0].speaker != ex.supervisions[0].speaker
        assert ref.supervisions[0].speaker == tgt.supervisions[0].speaker
        assert ref.supervisions[0].text != tgt.supervisions[0].text
    assert "p227_002" not in speech
    log = skipped(out, "vctk")
    assert "corrupt audio" in log and "empty transcript" in log
    assert vctk.prepare_vctk(root, out, num_pairs=4, seed=0) is False
    vctk.prepare_vctk(root, out, num_pairs=100, seed=0)
    assert "not enough shared sentences" in skipped(out, "vctk")


def test_missing_corpus_names_layout(tmp_path):
    with pytest.raises(CorpusLayoutError, match=r"wav48_silence_trimmed.*\n.*--corpus-dir|Expected layout"):
        vctk.prepare_vctk(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "LibriSpeech/train-clean-100").mkdir(parents=True)
    with pytest.raises(CorpusLayoutError, match="trans.txt"):
        librispeech.prepare_librispeech(tmp_path / "LibriSpeech", tmp_path / "out")
    with pytest.raises(SystemExit, match="Expected layout"):
        prepare_corpus.main(["iemocap", "--corpus-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")])
