"""VCTK -> the VC evaluation set: seeded pairs of the same sentence read by two speakers.

Each pair (paper: 400): source = an utterance of speaker A, target = the same sentence read by
speaker B, speaker_ref = another utterance of B (a different sentence), as in the paper's VC
test. "Same sentence" means the same normalised text (VCTK's shared passages), not the same
file number. Files follow lhotse's vctk recipe: VCTK-Corpus-0.92 (``wav48_silence_trimmed``,
flac, ``_mic1``/``_mic2``) or the older VCTK-Corpus (``wav48``, wav). Ids are the transcript's
(``p225_001``) without lhotse's ``_mic2`` suffix, the same for both layouts (one microphone per
run; it is in the stamp). Only the utterances used by the pairs become speech cuts (part ``test``).
"""
from __future__ import annotations

import random
import re
from collections import defaultdict
from pathlib import Path

from dualspeech.data.corpora.common import (Preparer, check_layout, common_args, load_recordings,
                                            other_utterance, read_lines, read_text,
                                            register_preparer, run_preparation,
                                            untranscribed_audio)
from dualspeech.data.manifest_io import PartData, SkipLog, speech_cut, task_example

VERSION = 2   # 2: absolute audio paths, tail-checked audio, undecodable lines skipped
LAYOUT = """VCTK-Corpus-0.92/                 (--corpus-dir points here)
  speaker-info.txt                 "ID  AGE  GENDER  ACCENTS  REGION ..." table
  txt/p225/p225_001.txt            one sentence
  wav48_silence_trimmed/p225/p225_001_mic2.flac   (0.92; older VCTK-Corpus: wav48/p225/p225_001.wav)"""


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def read_speaker_info(root: Path, skips: SkipLog) -> dict[str, str]:
    """speaker -> gender (ids as in the txt folders: p225)."""
    info = {}
    path = root / "speaker-info.txt"
    if path.is_file():
        for n, line in read_lines(path, skips):
            if n == 1:
                continue
            f = line.split()
            if len(f) >= 3:
                info[f[0] if f[0].startswith(("p", "s")) else f"p{f[0]}"] = f[2]
    return info


def audio_path(root: Path, utt: str, mic: str) -> Path:
    spk = utt.split("_")[0]
    if (root / "wav48_silence_trimmed").is_dir():
        return root / "wav48_silence_trimmed" / spk / f"{utt}_{mic}.flac"
    return root / "wav48" / spk / f"{utt}.wav"


def all_audio(root: Path, mic: str) -> dict[str, Path]:
    """utterance id -> audio file, for every file of the microphone."""
    if (root / "wav48_silence_trimmed").is_dir():
        return {p.name[:-len(f"_{mic}.flac")]: p
                for p in root.glob(f"wav48_silence_trimmed/*/*_{mic}.flac")}
    return {p.stem: p for p in root.glob("wav48/*/*.wav")}


def prepare_vctk(corpus_dir: str | Path, output_dir: str | Path, num_pairs: int = 400,
                 seed: int = 0, mic: str = "mic2", num_jobs: int = 2, force: bool = False) -> bool:
    root = check_layout("vctk", corpus_dir, ["txt/*/*.txt"], LAYOUT)
    if not any(root.glob("wav48_silence_trimmed/*/*.flac")) and not any(root.glob("wav48/*/*.wav")):
        check_layout("vctk", root, ["wav48_silence_trimmed/*/*.flac"], LAYOUT)
    inputs = sorted(root.glob("txt/*/*.txt"))

    def build(skips: SkipLog) -> dict[str, PartData]:
        genders = read_speaker_info(root, skips)
        texts, bad_ids = {}, set()
        for path in inputs:
            text = read_text(path, skips)
            if text is None:
                bad_ids.add(path.stem)
            elif not text.strip():
                skips.add(path, "empty transcript")
                bad_ids.add(path.stem)              # one skip per utterance
            else:
                texts[path.stem] = text.strip()
        audio = all_audio(root, mic)
        untranscribed_audio([p for u, p in audio.items() if u not in bad_ids and u not in texts],
                            set(), skips)
        recs = load_recordings([(audio_path(root, u, mic), u) for u in texts], skips, num_jobs)
        by_text, by_spk = defaultdict(list), defaultdict(list)
        for utt in texts:
            if utt in recs:
                by_text[normalise(texts[utt])].append(utt)
                by_spk[utt.split("_")[0]].append(utt)
        sources = [u for group in by_text.values() if len({x.split("_")[0] for x in group}) > 1
                   for u in group]
        rng = random.Random(seed)
        rng.shuffle(sources)
        pairs = []
        for src in sources:
            if len(pairs) == num_pairs:
                break
            spk = src.split("_")[0]
            group = by_text[normalise(texts[src])]
            tgt = rng.choice([u for u in group if u.split("_")[0] != spk])
            same_text = [u for u in by_spk[tgt.split("_")[0]] if normalise(texts[u]) == normalise(texts[src])]
            ref = other_utterance(rng, by_spk[tgt.split("_")[0]], same_text)
            if ref is not None:
                pairs.append((src, tgt, ref))
        if len(pairs) < num_pairs:
            skips.add(f"made {len(pairs)} of {num_pairs} pairs", "not enough shared sentences")
        data, cuts = PartData(), {}
        for utt in sorted({u for p in pairs for u in p}):
            spk = utt.split("_")[0]
            cuts[utt] = speech_cut(recs[utt], texts[utt], spk, gender=genders.get(spk))
            data.add_cut(cuts[utt])
        for src, tgt, ref in pairs:
            data.add_example(task_example(cuts[src], "vc", {"target": tgt, "speaker_ref": ref},
                                          text=texts[src]))
        return {"test": data}

    return run_preparation("vctk", output_dir,
                           {"version": VERSION, "corpus_dir": str(root.resolve()),
                            "num_pairs": num_pairs, "seed": seed, "mic": mic}, inputs, build, force)


def _options(p) -> None:
    p.add_argument("--num-pairs", type=int, default=400)
    p.add_argument("--mic", default="mic2", help="VCTK 0.92 microphone (mic1 | mic2)")
    p.add_argument("--seed", type=int, default=0)


register_preparer("vctk")(Preparer(
    "VCTK: the seeded VC evaluation pairs", __doc__, LAYOUT, _options,
    lambda a: prepare_vctk(**common_args(a), num_pairs=a.num_pairs, seed=a.seed, mic=a.mic)))
