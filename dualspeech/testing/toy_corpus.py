"""A tiny token-bearing 8-task corpus with learnable random tokens, in the real on-disk layout.

Why: LM tests, benchmarks and CI smoke runs must not wait for audio synthesis and token
extraction. The files are exactly what the extractors write (``ustokens`` / ``acoustic_tokens``
TemporalArrays and a ``speaker_embedding`` Array stored with lhotse's numpy writers, next to
the task manifests), only the ids are made up: each word maps to a fixed short code sequence,
acoustic ids are a fixed function of the speech codes plus a per-speaker offset, so every loss
has something to learn.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from dualspeech.data.tasks import speech_manifest_name, task_manifest_name, validate_example

WORDS = ("the cat sat on a mat red blue green dog runs fast slow big small sun moon sky "
         "tree bird sings loud soft").split()
EMOTIONS = ("neutral", "happy", "sad", "angry")


def _seq(rng, n_words):
    return " ".join(rng.choice(WORDS, size=n_words))


def _codes(text: str, k: int, per_word: int) -> np.ndarray:
    out = []
    for w in text.split():
        seed = zlib.crc32(w.encode())
        out += [(seed >> (3 * j)) % k for j in range(per_word)]
    return np.asarray(out, dtype=np.int64)


def write_toy_corpus(root: str | Path, corpus: str = "toy", part: str = "train",
                     n_per_task: int = 6, num_speech_tokens: int = 64, n_codes: int = 128,
                     spk_dim: int = 16, seed: int = 0, speech_field: str = "ustokens") -> Path:
    """Write ``<root>/cuts`` + ``<root>/tasks`` for one part; returns ``root``."""
    from lhotse import CutSet, MonoCut
    from lhotse import NumpyFilesWriter
    from lhotse.utils import fastcopy

    root = Path(root)
    rng = np.random.default_rng(seed)
    speakers = {f"spk{i}": rng.normal(size=spk_dim).astype(np.float32) for i in range(3)}
    cuts: dict[str, MonoCut] = {}

    with NumpyFilesWriter(root / "arrays" / f"{corpus}_{part}") as writer:
        def utt(text: str, speaker: str) -> str:
            cid = f"{corpus}-{part}-{len(cuts):04d}"
            codes = _codes(text, num_speech_tokens, 3)
            offset = int(speaker[3:]) * 7
            acoustic = np.repeat((codes * 5 + offset) % n_codes, 2)
            cut = MonoCut(id=cid, start=0.0, duration=len(codes) * 0.04, channel=0,
                          custom={"text": text, "speaker": speaker})
            cut = cut.with_custom(speech_field, writer.store_array(
                cid + "_s", codes, frame_shift=0.04, temporal_dim=0, start=0.0))
            cut = cut.with_custom("acoustic_tokens", writer.store_array(
                cid + "_a", acoustic, frame_shift=0.02, temporal_dim=0, start=0.0))
            cut = cut.with_custom("speaker_embedding", writer.store_array(
                cid + "_e", speakers[speaker]))
            cuts[cid] = cut
            return cid

        tasks: dict[str, list] = {t: [] for t in ("asr", "s2tt", "ser", "sqa", "tts", "t2st",
                                                  "vc", "sc")}

        def example(task, cid, links=None, **fields):
            custom = {"task": task, **fields, **({"links": links} if links else {})}
            ex = fastcopy(cuts[cid], custom=custom)
            validate_example(ex)
            tasks[task].append(ex)

        for n in range(n_per_task):
            spk = f"spk{n % 3}"
            other = f"spk{(n + 1) % 3}"
            text = _seq(rng, 2 + n % 3)
            a, b = utt(text, spk), utt(text, other)
            ref = utt(_seq(rng, 2), other)
            example("asr", a, text=text)
            example("s2tt", a, source_text=text, target_text="das " + text, source_lang="en",
                    target_lang="de")
            example("ser", a, emotion=EMOTIONS[n % 4])
            example("sqa", a, question="what is said first?", answer=text.split()[0])
            example("tts", b, links={"speaker_ref": ref}, text=text)
            example("t2st", b, links={"speaker_ref": ref}, source_text="el " + text,
                    target_text=text, source_lang="es", target_lang="en")
            example("vc", a, links={"target": b, "speaker_ref": ref}, text=text)
            q = utt("what " + text.split()[0], spk)
            ans = utt(text.split()[-1], other)
            example("sc", a, links={"question": q, "target": ans, "speaker_ref": ref},
                    question="what " + text.split()[0], answer=text.split()[-1])

    (root / "cuts").mkdir(parents=True, exist_ok=True)
    (root / "tasks").mkdir(parents=True, exist_ok=True)
    CutSet.from_cuts(cuts.values()).to_file(root / "cuts" / speech_manifest_name(corpus, part))
    for task, exs in tasks.items():
        CutSet.from_cuts(exs).to_file(root / "tasks" / task_manifest_name(corpus, task, part))
    return root
