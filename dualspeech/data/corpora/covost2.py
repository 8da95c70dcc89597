"""CoVoST 2 En->De -> S2TT task data over Common Voice English mp3 clips.

CoVoST 2 ships ``covost_v2.en_de.tsv`` (columns path, translation, split, ...); the English
transcript comes from Common Voice's ``validated.tsv`` (path, sentence, client_id), joined on
``path`` exactly as CoVoST's get_covost_splits.py does (train = train + train_covost). If the
split files that script writes (``covost_v2.en_de.{train,dev,test}.tsv``, which already hold
``sentence``) are present they are used directly. mp3 is decoded by libsndfile (>= 1.1), no
torchaudio; without mp3 support clips are converted with ffmpeg (see common.mp3_source).
"""
from __future__ import annotations

from pathlib import Path

from dualspeech.data.corpora.common import (CorpusLayoutError, Preparer, check_layout, common_args,
                                            load_recordings, mp3_source, read_tsv,
                                            register_preparer, run_preparation)
from dualspeech.data.manifest_io import PartData, SkipLog, speech_cut, task_example

VERSION = 2   # 2: absolute audio paths, tail-checked audio, undecodable lines skipped
SPLITS = {"train": ("train", "train_covost"), "dev": ("dev",), "test": ("test",)}
LAYOUT = """<cv-corpus>/en/                   (--corpus-dir: Common Voice English)
  validated.tsv                    columns: client_id path sentence ...
  clips/common_voice_en_<n>.mp3
<covost-dir>/                      (--covost-dir, default: --corpus-dir)
  covost_v2.en_de.tsv              columns: path translation split (train|train_covost|dev|test)
  or covost_v2.en_de.{train,dev,test}.tsv  (get_covost_splits.py output: path sentence translation client_id)"""


def covost_rows(corpus_dir: Path, covost_dir: Path, src: str, tgt: str,
                skips: SkipLog) -> dict[str, list[dict]]:
    """{our split: rows with path, sentence, translation, client_id}."""
    prefix = f"covost_v2.{src}_{tgt}"
    if all((covost_dir / f"{prefix}.{s}.tsv").is_file() for s in SPLITS):
        return {s: read_tsv(covost_dir / f"{prefix}.{s}.tsv", skips) for s in SPLITS}
    release = covost_dir / f"{prefix}.tsv"
    if not release.is_file():
        raise CorpusLayoutError(f"covost2: neither {release} nor the split files {prefix}."
                                f"{{train,dev,test}}.tsv exist.\nExpected layout:\n{LAYOUT}")
    cv = {r["path"]: r for r in read_tsv(corpus_dir / "validated.tsv", skips)}
    out = {s: [] for s in SPLITS}
    which = {name: s for s, names in SPLITS.items() for name in names}
    for row in read_tsv(release, skips):
        split = which.get(row.get("split"))
        if split is None:
            continue
        if row["path"] not in cv:
            skips.add(row["path"], "clip not in Common Voice validated.tsv (no transcript)")
            continue
        out[split].append({**row, "sentence": cv[row["path"]]["sentence"],
                           "client_id": cv[row["path"]].get("client_id", "")})
    return out


def prepare_covost2(corpus_dir: str | Path, output_dir: str | Path, covost_dir=None,
                    src_lang: str = "en", tgt_lang: str = "de", num_jobs: int = 2,
                    force: bool = False) -> bool:
    corpus_dir = check_layout("covost2", corpus_dir, ["validated.tsv", "clips"], LAYOUT)
    covost_dir = Path(covost_dir) if covost_dir else corpus_dir
    check_layout("covost2", covost_dir, [f"covost_v2.{src_lang}_{tgt_lang}*.tsv"], LAYOUT,
                 "--covost-dir")
    inputs = [corpus_dir / "validated.tsv", *covost_dir.glob(f"covost_v2.{src_lang}_{tgt_lang}*.tsv")]
    out_dir = Path(output_dir)

    def build(skips: SkipLog) -> dict[str, PartData]:
        result = {}
        for split, rows in covost_rows(corpus_dir, covost_dir, src_lang, tgt_lang, skips).items():
            usable = []
            for r in rows:
                if not (r.get("sentence") or "").strip() or not (r.get("translation") or "").strip():
                    skips.add(r["path"], "empty transcript or translation")
                    continue
                usable.append(r)
            ids = [Path(r["path"]).stem for r in usable]
            recs = load_recordings([(mp3_source(corpus_dir / "clips" / r["path"],
                                                out_dir / "audio" / "covost2"), i)
                                    for r, i in zip(usable, ids)], skips, num_jobs)
            data = PartData()
            for r, utt in zip(usable, ids):
                if utt not in recs:
                    continue
                text = r["sentence"].strip()
                cut = speech_cut(recs[utt], text, r.get("client_id") or None)
                data.add_cut(cut)
                data.add_example(task_example(cut, "s2tt", text=text, source_text=text,
                                              target_text=r["translation"].strip(),
                                              source_lang=src_lang, target_lang=tgt_lang))
            result[split] = data
        return result

    return run_preparation("covost2", output_dir,
                           {"version": VERSION, "corpus_dir": str(corpus_dir.resolve()),
                            "covost_dir": str(covost_dir.resolve()), "pair": [src_lang, tgt_lang]},
                           inputs, build, force)


def _options(p) -> None:
    p.add_argument("--covost-dir", help="directory with covost_v2.en_de*.tsv (default: --corpus-dir)")


register_preparer("covost2")(Preparer(
    "CoVoST 2 En->De over Common Voice English: S2TT", __doc__, LAYOUT, _options,
    lambda a: prepare_covost2(**common_args(a), covost_dir=a.covost_dir)))
