"""Fake corpora in the real on-disk layouts, and small readers of what the preparers write,
shared by the data, recipe, tokenizer and training tests (one home, not imported test from
test)."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording

from conftest import espeak_wave
from dualspeech.data.manifest_io import speech_cut, task_example, write_manifest

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "egs/mini/conf/ustokenizer_debug.yaml")   # the USTokenizer debug config
SENTENCES = {
    "train": [("Nora counted two black lamps.", "neutral", "What did Nora count?", "Two black lamps."),
              ("The green kite flew over the hill.", "happy", "What flew over the hill?", "The green kite."),
              ("Tom lost his old red hat.", "sad", "What did Tom lose?", "His old red hat."),
              ("Close the door right now!", "angry", "What should be closed?", "The door.")],
    "dev": [("Anna painted a small blue boat.", "neutral", "What did Anna paint?", "A small blue boat."),
            ("We ate warm bread at noon.", "happy", "When did we eat?", "At noon.")],
}
RNG = np.random.default_rng(0)


def audio(path: Path, seconds: float = 0.5, sr: int = 16000, fmt: str | None = None) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * sr)
    sf.write(path, (0.1 * RNG.standard_normal(n)).astype(np.float32), sr, format=fmt)
    return n


def corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not audio at all" * 10)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def fake_librispeech(root: Path) -> Path:
    ls = root / "LibriSpeech"
    lines = {("train-clean-100", "103", "1240"): ["103-1240-0000 CHAPTER ONE MISSUS RACHEL",
                                                  "103-1240-0001 THAT HAD ITS SOURCE AWAY BACK",
                                                  "103-1240-0002", "103-1240-0003 GONE AWAY"],
             ("train-clean-100", "19", "198"): ["19-198-0000 NORTHANGER ABBEY",
                                                "19-198-0001 NO ONE WHO HAD EVER SEEN"],
             ("test-clean", "1089", "134686"): ["1089-134686-0000 HE HOPED THERE WOULD BE STEW",
                                                "1089-134686-0001 STUFF IT INTO YOU"]}
    for (part, spk, ch), ls_lines in lines.items():
        d = ls / part / spk / ch
        write(d / f"{spk}-{ch}.trans.txt", "\n".join(ls_lines) + "\n")
        for line in ls_lines:
            if line.split()[0] != "103-1240-0003":          # its flac is missing
                audio(d / f"{line.split()[0]}.flac", fmt="FLAC")
    corrupt(ls / "train-clean-100/19/198/19-198-0001.flac")
    return ls


def sqa_json(root: Path) -> Path:
    base = "/mnt/salmonn/data/LibriSpeech"
    ann = [{"path": f"{base}/train-clean-100/103/1240/103-1240-0000.flac", "Q": "Who is named?",
            "text": "Missus Rachel.", "task": "QA"},
           {"path": f"{base}/train-clean-100/103/1240/103-1240-0000.flac", "Q": "Again?",
            "text": "Yes.", "task": "QA"},
           {"path": f"{base}/train-clean-100/103/1240/103-1240-0001.flac", "Q": "",
            "text": "no question", "task": "QA"},
           {"path": f"{base}/train-clean-100/103/1240/103-1240-0001.flac",
            "text": "THAT HAD ITS SOURCE", "task": "asr"},
           {"path": f"{base}/train-clean-100/19/198/19-198-0001.flac", "Q": "Who saw it?",
            "text": "No one.", "task": "QA"},
           {"path": f"{base}/test-clean/1089/134686/1089-134686-0000.flac",
            "Q": "What did he hope for?", "text": "Stew for dinner.", "task": "QA"},
           {"path": f"{base}/test-clean/1089/134686/1089-134686-0001.flac",
            "Q": "What should be stuffed?", "text": "It should.", "task": "QA"}]
    return write(root / "salmonn_sqa.json", json.dumps({"annotation": ann}))


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


def speech_ids(out: Path) -> set[str]:
    return {c.id for p in sorted((out / "cuts").glob("*.jsonl.gz")) for c in CutSet.from_file(p)}


def skip_log(out: Path, name: str) -> str:
    return (out / f"skipped_{name}.log").read_text()


def argv_for(name: str, env: dict, out: Path) -> list[str]:
    e = {k: str(v) for k, v in env.items()}
    args = {
        "librispeech": lambda: ["--corpus-dir", e["LIBRISPEECH"], "--sqa-json", e["LIBRISPEECH_SQA"]],
        "libritts_r": lambda: ["--corpus-dir", e["LIBRITTS_R"]],
        "covost2": lambda: ["--corpus-dir", e["COMMONVOICE_EN"], "--covost-dir", e["COVOST2"]],
        "cvss": lambda: ["--corpus-dir", e["CVSS_C"], "--cv-dir", f"es={e['COMMONVOICE_ES']}",
                         "--cv-dir", f"fr={e['COMMONVOICE_FR']}"],
        "iemocap": lambda: ["--corpus-dir", e["IEMOCAP"]],
        "libriheavy": lambda: ["--corpus-dir", e["LIBRIHEAVY"], "--librilight-dir", e["LIBRILIGHT"],
                               "--subset", "medium"],
        "vctk": lambda: ["--corpus-dir", e["VCTK"], "--num-pairs", "2"],
    }[name]()
    return [name, *args, "--output-dir", str(out)]


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_corpus(root: Path) -> Path:
    """tasks/toy_{asr,ser,sqa}_<part>.jsonl.gz and cuts/toy_cuts_<part>.jsonl.gz, real layout."""
    for part, rows in SENTENCES.items():
        cuts, tasks = [], {"asr": [], "ser": [], "sqa": []}
        for i, (text, emotion, question, answer) in enumerate(rows):
            voice = ["en-us", "en-us+f2"][i % 2]
            path = root / "audio" / f"toy_{part}_{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, espeak_wave(text, voice, 16000), 16000, subtype="PCM_16")
            cut = speech_cut(Recording.from_file(path, recording_id=f"toy_{part}_{i}"), text, f"spk{i % 2}")
            cuts.append(cut)
            tasks["asr"].append(task_example(cut, "asr", text=text))
            tasks["ser"].append(task_example(cut, "ser", text=text, emotion=emotion))
            tasks["sqa"].append(task_example(cut, "sqa", text=text, question=question, answer=answer))
        write_manifest(cuts, root / "cuts" / f"toy_cuts_{part}.jsonl.gz")
        for task, examples in tasks.items():
            write_manifest(examples, root / "tasks" / f"toy_{task}_{part}.jsonl.gz")
    return root
