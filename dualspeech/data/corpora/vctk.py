"""VCTK -> the VC evaluation set: seeded pairs of the same sentence read by two speakers.

Each pair (paper: 400): source = an utterance of speaker A, target = the same sentence read by
speaker B, speaker_ref = another utterance of B (a different sentence), as in the paper's VC
test. "Same sentence" means the same normalised text (VCTK's shared passages), not the same
file number. Files follow lhotse's vctk recipe: VCTK-Corpus-0.92 (``wav48_silence_trimmed``,
flac, ``_mic1``/``_mic2``) or the older VCTK-Corpus (``wav48``, wav). Only the utterances used by
the pairs become speech cuts (part ``test``).
"""
from __future__ import annotations

import random
import re
from collections import defaultdict
from pathlib import Path

from dualspeech.data.corpora.common import (check_layout, load_recordings, other_utterance,
                                            run_preparation)
from dualspeech.data.manifest_io import PartData, SkipLog, speech_cut, task_example

VERSION = 1
LAYOUT = """VCTK-Corpus-0.92/                 (--corpus-dir points here)
  speaker-info.txt                 "ID  AGE  GENDER  ACCENTS  REGION ..." table
  txt/p225/p225_001.txt            one sentence
  wav48_silence_trimmed/p225/p225_001_mic2.flac   (0.92; older VCTK-Corpus: wav48/p225/p225_001.wav)"""


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def read_speaker_info(root: Path) -> dict[str, str]:
    """speaker -> gender (ids as in the txt folders: p225)."""
    info = {}
    path = root / "speaker-info.txt"
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
            f = line.split()
            if len(f) >= 3:
                info[f[0] if f[0].startswith(("p", "s")) else f"p{f[0]}"] = f[2]
    return info


def audio_path(root: Path, utt: str, mic: str) -> Path:
    spk = utt.split("_")[0]
    if (root / "wav48_silence_trimmed").is_dir():
        return root / "wav48_silence_trimmed" / spk / f"{utt}_{mic}.flac"
    return root / "wav48" / spk / f"{utt}.wav"


def prepare_vctk(corpus_dir: str | Path, output_dir: str | Path, num_pairs: int = 400,
                 seed: int = 0, mic: str = "mic2", num_jobs: int = 2, force: bool = False) -> bool:
    root = check_layout("vctk", corpus_dir, ["txt/*/*.txt"], LAYOUT)
    if not any(root.glob("wav48_silence_trimmed/*/*.flac")) and not any(root.glob("wav48/*/*.wav")):
        check_layout("vctk", root, ["wav48_silence_trimmed/*/*.flac"], LAYOUT)
    inputs = sorted(root.glob("txt/*/*.txt"))

    def build(skips: SkipLog) -> dict[str, PartData]:
        genders = read_speaker_info(root)
        texts = {}
        for path in inputs:
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            if not text:
                skips.add(path, "empty transcript")
            else:
                texts[path.stem] = text
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
