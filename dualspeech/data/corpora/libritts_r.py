"""LibriTTS-R -> TTS task data (text + another utterance of the speaker -> speech).

Follows lhotse's libritts recipe (which also serves LibriTTS-R): utterances and normalised text
from ``<spk>_<chapter>.trans.tsv`` (id, original, normalised), gender from SPEAKERS.txt. lhotse
writes ``libritts_*`` names for both corpora; here the prefix is ``libritts_r`` so the two never
collide. The speaker prompt of each example is another utterance of the same speaker in the same
part, drawn with the seed.
"""
from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from dualspeech.data.corpora.common import (FirstOfEachId, Preparer, check_layout, common_args,
                                            load_recordings, other_utterance, read_lines, register_preparer,
                                            run_preparation, untranscribed_audio)
from dualspeech.data.manifest_io import PartData, SkipLog, speech_cut, task_example

VERSION = 2   # 2: absolute audio paths, tail-checked audio, undecodable lines skipped
PARTS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100",
         "train-clean-360", "train-other-500")
LAYOUT = """LibriTTS_R/                       (--corpus-dir points here)
  SPEAKERS.txt                     optional: ";ID |SEX| SUBSET |MINUTES| NAME" table
  train-clean-100/ ... test-other/
    <spk>/<chapter>/<spk>_<chapter>.trans.tsv    lines: "<id>\\t<original>\\t<normalised>"
    <spk>/<chapter>/<spk>_<chapter>_<para>_<sent>.wav"""


def read_genders(corpus_dir: Path, skips: SkipLog) -> dict[str, str]:
    path = corpus_dir / "SPEAKERS.txt"
    if not path.is_file():
        return {}
    rows = (line.split("|") for _, line in read_lines(path, skips)
            if line.strip() and not line.startswith(";"))
    return {r[0].strip(): r[1].strip() for r in rows if len(r) >= 2}


def prepare_libritts_r(corpus_dir: str | Path, output_dir: str | Path, parts=None, seed: int = 0,
                       num_jobs: int = 2, force: bool = False) -> bool:
    corpus_dir = check_layout("libritts_r", corpus_dir, ["*/*/*/*.trans.tsv"], LAYOUT)
    found = [p for p in PARTS if (corpus_dir / p).is_dir()]
    parts = list(parts) if parts else found
    check_layout("libritts_r", corpus_dir, parts, LAYOUT)
    inputs = [t for p in parts for t in (corpus_dir / p).rglob("*.trans.tsv")]

    def build(skips: SkipLog) -> dict[str, PartData]:
        genders = read_genders(corpus_dir, skips)
        result = {}
        for part in parts:
            rng = random.Random(f"{seed}-{part}")
            utts, bad_ids, first = [], set(), FirstOfEachId(skips)
            for trans in sorted((corpus_dir / part).rglob("*.trans.tsv")):
                if trans.name.startswith("._"):
                    continue
                for n, line in read_lines(trans, skips, bad_ids):
                    fields = line.split("\t")
                    if len(fields) < 3 or not fields[2].strip():
                        skips.add(f"{trans}:{fields[0]}", "empty transcript")
                        bad_ids.add(fields[0])      # one skip per utterance
                        continue
                    if not first(fields[0], f"{trans}:{n}"):
                        continue
                    utts.append((trans.parent / f"{fields[0]}.wav", fields[0], fields[2].strip()))
            untranscribed_audio((corpus_dir / part).rglob("*.wav"),
                                bad_ids | {u for _, u, _ in utts}, skips)
            recs = load_recordings([(p, u) for p, u, _ in utts], skips, num_jobs)
            data, by_spk = PartData(), defaultdict(list)
            for _, utt, text in utts:
                if utt in recs:
                    spk = utt.split("_")[0]
                    data.add_cut(speech_cut(recs[utt], text, spk, gender=genders.get(spk)))
                    by_spk[spk].append(utt)
            for cut in data.cuts:
                ref = other_utterance(rng, by_spk[cut.supervisions[0].speaker], [cut.id])
                if ref is None:
                    skips.add(cut.id, "TTS: no other utterance of the speaker for the prompt")
                    continue
                data.add_example(task_example(cut, "tts", {"speaker_ref": ref},
                                              text=cut.supervisions[0].text))
            result[part] = data
        return result

    return run_preparation("libritts_r", output_dir,
                           {"version": VERSION, "corpus_dir": str(corpus_dir.resolve()),
                            "parts": parts, "seed": seed}, inputs, build, force)


def _options(p) -> None:
    p.add_argument("--parts", nargs="+", help="parts (default: all present)")
    p.add_argument("--seed", type=int, default=0, help="seed for the speaker prompts")


register_preparer("libritts_r")(Preparer(
    "LibriTTS-R: TTS (manifests prefixed libritts_r)", __doc__, LAYOUT, _options,
    lambda a: prepare_libritts_r(**common_args(a), parts=a.parts, seed=a.seed)))
