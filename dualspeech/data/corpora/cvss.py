"""CVSS-C Es->En / Fr->En -> T2ST task data (source-language text -> English speech).

CVSS-C ships per language pair ``{train,dev,test}.tsv`` (no header: Common Voice clip name,
English translation) and the synthesised English speech ``{split}/<clip>.mp3.wav`` in one
canonical voice. The source-language text is the Common Voice transcript of the clip, read from
that language's ``validated.tsv``. The speaker prompt is another CVSS-C utterance of the same
split (all share the canonical voice). Parts are ``<split>_<lang>`` (e.g. train_es, test_fr).
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from dualspeech.data.corpora.common import (CorpusLayoutError, Preparer, check_layout, common_args,
                                            load_recordings, other_utterance, read_tsv,
                                            register_preparer, run_preparation)
from dualspeech.data.manifest_io import PartData, SkipLog, speech_cut, task_example

VERSION = 2   # 2: absolute audio paths, tail-checked audio, undecodable lines skipped
SPLITS = ("train", "dev", "test")
LAYOUT = """<cvss-c>/                          (--corpus-dir)
  es-en/  (or cvss_c_es_en_v1.0/)  and/or fr-en/
    train.tsv dev.tsv test.tsv     lines: "common_voice_es_<n>.mp3\\t<English translation>"
    train/ dev/ test/common_voice_es_<n>.mp3.wav
<cv-corpus>/es/validated.tsv       (--cv-dir es=DIR, fr=DIR: Common Voice of the source language)"""


def pair_dir(root: Path, lang: str) -> Path:
    for name in (f"{lang}-en", f"cvss_c_{lang}_en_v1.0", f"cvss_c_{lang}_en"):
        if (root / name).is_dir():
            return root / name
    return root / f"{lang}-en"


def prepare_cvss(corpus_dir: str | Path, output_dir: str | Path, cv_dirs: dict[str, str | Path],
                 langs=("es", "fr"), seed: int = 0, num_jobs: int = 2, force: bool = False) -> bool:
    root = Path(corpus_dir)
    for lang in langs:
        check_layout("cvss", pair_dir(root, lang), [f"{s}.tsv" for s in SPLITS], LAYOUT)
        if lang not in cv_dirs:
            raise CorpusLayoutError(f"cvss: no Common Voice directory for {lang!r} (it holds the "
                                    f"source text); pass --cv-dir {lang}=DIR.\nExpected layout:\n{LAYOUT}")
        check_layout("cvss", cv_dirs[lang], ["validated.tsv"], LAYOUT, f"--cv-dir {lang}=DIR")
    inputs = [pair_dir(root, lang) / f"{s}.tsv" for lang in langs for s in SPLITS]
    inputs += [Path(cv_dirs[lang]) / "validated.tsv" for lang in langs]

    def build(skips: SkipLog) -> dict[str, PartData]:
        result = {}
        for lang in langs:
            source = {r["path"]: r["sentence"]
                      for r in read_tsv(Path(cv_dirs[lang]) / "validated.tsv", skips)}
            for split in SPLITS:
                d = pair_dir(root, lang)
                rows = []
                for fields in read_tsv(d / f"{split}.tsv", skips, header=False):
                    clip = fields[0] if fields else ""
                    target = fields[1].strip() if len(fields) > 1 else ""
                    if not target:
                        skips.add(f"{lang}/{split}/{clip}", "empty translation")
                    elif not (source.get(clip) or "").strip():
                        skips.add(f"{lang}/{split}/{clip}", "no source text in validated.tsv")
                    else:
                        rows.append((clip, source[clip].strip(), target))
                ids = [f"cvss_c_{lang}_{Path(c).stem}" for c, _, _ in rows]
                recs = load_recordings([(d / split / f"{c}.wav", i) for (c, _, _), i in zip(rows, ids)],
                                       skips, num_jobs)
                data, texts = PartData(), []
                for (_, src_text, tgt_text), utt in zip(rows, ids):
                    if utt in recs:
                        data.add_cut(speech_cut(recs[utt], tgt_text, "cvss_c"))
                        texts.append((src_text, tgt_text))
                rng, pool = random.Random(f"{seed}-{lang}-{split}"), [c.id for c in data.cuts]
                for cut, (src_text, tgt_text) in zip(data.cuts, texts):
                    ref = other_utterance(rng, pool, [cut.id])
                    if ref is None:
                        skips.add(cut.id, "T2ST: no other utterance for the speaker prompt")
                        continue
                    data.add_example(task_example(cut, "t2st", {"speaker_ref": ref}, text=tgt_text,
                                                  source_text=src_text, target_text=tgt_text,
                                                  source_lang=lang, target_lang="en"))
                result[f"{split}_{lang}"] = data
        return result

    return run_preparation("cvss_c", output_dir,
                           {"version": VERSION, "corpus_dir": str(root.resolve()),
                            "cv_dirs": {k: str(Path(v).resolve()) for k, v in cv_dirs.items()},
                            "langs": list(langs), "seed": seed}, inputs, build, force)


def _lang_dir(value: str) -> tuple[str, str]:
    lang, sep, path = value.partition("=")
    if not sep or not lang or not path:
        raise argparse.ArgumentTypeError(f"expected LANG=DIR (e.g. es=/data/cv-corpus-4/es), got {value!r}")
    return lang, path


def _options(p) -> None:
    p.add_argument("--cv-dir", type=_lang_dir, action="append", default=[], metavar="LANG=DIR",
                   help="Common Voice directory of a source language (holds validated.tsv)")
    p.add_argument("--langs", nargs="+", default=["es", "fr"])
    p.add_argument("--seed", type=int, default=0)


register_preparer("cvss")(Preparer(
    "CVSS-C Es/Fr->En: T2ST", __doc__, LAYOUT, _options,
    lambda a: prepare_cvss(**common_args(a), cv_dirs=dict(a.cv_dir), langs=a.langs, seed=a.seed)))
