"""What every real-corpus preparer shares: layout checks, robust audio scanning, stamping.

A preparer's ``build(skips)`` returns ``{part: PartData}``; :func:`run_preparation` writes it
with :func:`dualspeech.data.manifest_io.write_part`, writes ``<out>/skipped_<corpus>.log`` and a
stamp, and turns an unchanged re-run into a no-op. lhotse's own recipes abort on the first
unreadable file, so the preparers here read each utterance's header themselves and log a skip.
"""
from __future__ import annotations

import csv
import logging
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import soundfile as sf
from lhotse import Recording
from tqdm import tqdm

from dualspeech.data.manifest_io import PartData, SkipLog, Stamp, input_fingerprint, write_part

log = logging.getLogger(__name__)


class CorpusLayoutError(FileNotFoundError):
    """The corpus directory is missing or does not look like the corpus as it ships."""


def check_layout(corpus: str, root: str | Path, required: Iterable[str], layout: str,
                 option: str = "--corpus-dir") -> Path:
    """Raise CorpusLayoutError unless every glob in ``required`` matches under ``root``."""
    root = Path(root)
    missing = list(required) if not root.is_dir() else [g for g in required if not any(root.glob(g))]
    if missing:
        where = "does not exist" if not root.is_dir() else f"lacks {missing}"
        raise CorpusLayoutError(
            f"{corpus}: {root} {where}.\nExpected layout (as the corpus ships):\n{layout}\n"
            f"Point at it with {option} (python -m dualspeech.bin.prepare_corpus {corpus} --help).")
    return root


def load_recording(path: Path, recording_id: str, skips: SkipLog) -> Recording | None:
    """A Recording for ``path``, or None after logging why it is unusable."""
    if not path.is_file():
        skips.add(path, "missing audio")
        return None
    try:
        rec = Recording.from_file(path, recording_id=recording_id)
    except Exception as e:  # soundfile/lhotse raise many types for broken files
        skips.add(f"{path} ({type(e).__name__})", "corrupt audio")
        return None
    if rec.num_samples <= 0:
        skips.add(path, "empty audio")
        return None
    return rec


def load_recordings(items: list[tuple[Path, str]], skips: SkipLog,
                    num_jobs: int = 2) -> dict[str, Recording]:
    """Header-read many (path, id) pairs in threads; returns the usable ones by id, in order."""
    with ThreadPoolExecutor(max(1, num_jobs)) as pool:
        recs = pool.map(lambda it: load_recording(it[0], it[1], skips), items)
        return {r.id: r for r in tqdm(recs, total=len(items), desc="reading audio headers",
                                      unit="file", mininterval=5.0, disable=len(items) < 1000) if r}


def mp3_source(path: Path, cache_dir: Path) -> Path:
    """``path`` itself when libsndfile decodes mp3 (>= 1.1), else an ffmpeg-made flac copy."""
    if "MP3" in sf.available_formats():
        return path
    if shutil.which("ffmpeg") is None:
        raise RuntimeError(
            f"cannot decode {path}: this libsndfile ({sf.__libsndfile_version__}) has no mp3 "
            "support and ffmpeg is not installed. Install soundfile>=0.12 (bundles libsndfile "
            ">= 1.1) or ffmpeg (tools/install.sh installs both).")
    out = cache_dir / (path.stem + ".flac")
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name("." + out.name + ".tmp.flac")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(path), str(tmp)],
                       check=False, capture_output=True)
        if tmp.exists():
            tmp.replace(out)
    return out


def read_tsv(path: Path, header: bool = True) -> list:
    """Common Voice / CoVoST / CVSS tsv: tab separated, no quoting, backslash escapes."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = (csv.DictReader if header else csv.reader)(
            f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        return list(reader)


def other_utterance(rng: random.Random, pool: list[str], exclude: Iterable[str]) -> str | None:
    """A seeded pick from ``pool`` that is none of ``exclude`` (the speaker prompt)."""
    excluded = set(exclude)
    for _ in range(8 if len(pool) > 2 * len(excluded) else 0):  # fast path for big pools
        pick = pool[rng.randrange(len(pool))]
        if pick not in excluded:
            return pick
    choices = [u for u in pool if u not in excluded]
    return rng.choice(choices) if choices else None


def run_preparation(corpus: str, output_dir: str | Path, params: dict, inputs: Iterable[Path],
                    build: Callable[[SkipLog], dict[str, PartData]], force: bool = False) -> bool:
    """Build and write a corpus unless an identical run already finished. True if it ran."""
    out = Path(output_dir)
    stamp = Stamp(out / f".{corpus}_stamp.json",
                  {"corpus": corpus, **params, "inputs": input_fingerprint(inputs)})
    if stamp.done() and not force:
        log.info("%s manifests in %s are up to date; nothing to do", corpus, out)
        return False
    skips = SkipLog(corpus)
    parts = build(skips)
    if not any(p.cuts for p in parts.values()):
        skips.write(out)
        raise CorpusLayoutError(f"{corpus}: no usable utterance found ({skips.counts()}); "
                                f"see {out / f'skipped_{corpus}.log'}")
    for part in [p for p, data in parts.items() if not data.cuts]:  # lhotse reads empty files as None
        log.warning("%s: part %s has no usable utterance; no manifests written for it", corpus, part)
        del parts[part]
    outputs = [p for part, data in sorted(parts.items()) for p in write_part(out, corpus, part, data)]
    outputs.append(skips.write(out))
    stamp.write(outputs)
    return True
