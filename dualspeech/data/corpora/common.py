"""What every real-corpus preparer shares: layout checks, robust audio and text reading,
stamping, and the registry ``prepare_corpus`` builds its subcommands from.

A preparer's ``build(skips)`` returns ``{part: PartData}``; :func:`run_preparation` writes it
with :func:`dualspeech.data.manifest_io.write_part`, writes ``<out>/skipped_<name>.log`` and a
stamp, and turns an unchanged re-run into a no-op. lhotse's own recipes abort on the first
unreadable file, so the preparers here read each utterance themselves and log a skip: audio
whose header or last frames do not decode, and text lines that are not UTF-8.
"""
from __future__ import annotations

import argparse
import csv
import logging
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import soundfile as sf
from lhotse import Recording
from tqdm import tqdm

from dualspeech.data.manifest_io import PartData, SkipLog, write_part
from dualspeech.utils.registry import registrar
from dualspeech.utils.stamp import Stamp, input_fingerprint

log = logging.getLogger(__name__)
NOT_UTF8 = "line not UTF-8"


@dataclass(frozen=True)
class Preparer:
    """One ``prepare_corpus`` subcommand: the shared options (--corpus-dir, --output-dir,
    --force, --nj) come from the command; ``options`` adds the corpus's own and ``run(args)``
    prepares with them."""
    help: str
    doc: str
    layout: str
    options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], bool]


PREPARERS: dict[str, Preparer] = {}
register_preparer = registrar(PREPARERS, "corpus preparer")


def common_args(args: argparse.Namespace) -> dict:
    """The keyword arguments every ``prepare_<corpus>`` takes, from the shared options."""
    return dict(corpus_dir=args.corpus_dir, output_dir=args.output_dir, force=args.force,
                num_jobs=args.nj)


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


def audio_problem(path: Path) -> str | None:
    """None when the header and the last frames decode; else the skip reason.

    A truncated flac keeps a valid header (the right length included) and fails only when the
    samples are read, so the tail is decoded too: one seek and 1024 frames per file.
    """
    try:
        with sf.SoundFile(path) as f:
            if f.frames <= 0:
                return "empty audio"
            f.seek(max(0, f.frames - 1024))
            if len(f.read(1024)) == 0:
                return "corrupt audio"
    except Exception:  # libsndfile raises several types for broken files
        return "empty audio" if _flac_without_samples(path) else "corrupt audio"
    return None


def _flac_without_samples(path: Path) -> bool:
    """A well-formed FLAC file holding no audio: metadata blocks only, STREAMINFO counting 0
    samples (sox and ffmpeg write these for a 0-frame input; libsndfile cannot open or seek
    them). A truncated FLAC keeps its real sample count, so it stays corrupt."""
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    if data[:4] != b"fLaC" or len(data) < 42 or data[4] & 0x7F != 0:   # STREAMINFO comes first
        return False
    if int.from_bytes(data[21:26], "big") & ((1 << 36) - 1):           # total samples
        return False
    pos, last = 4, False
    while not last and pos + 4 <= len(data):
        last = bool(data[pos] & 0x80)
        pos += 4 + int.from_bytes(data[pos + 1:pos + 4], "big")
    return last and pos == len(data)                                   # no audio frame follows


def load_recording(path: Path, recording_id: str, skips: SkipLog) -> Recording | None:
    """A Recording for ``path`` (absolute, so manifests load from any directory), or None after
    logging why it is unusable."""
    given = Path(path).absolute()          # skips name the corpus path, a symlink's included
    path = given.resolve()
    skips.read(path)
    if not path.is_file():
        skips.add(given, "missing audio")
        return None
    problem = audio_problem(path)
    if problem:
        skips.add(given, problem)
        return None
    try:
        rec = Recording.from_file(path, recording_id=recording_id)
    except Exception as e:  # soundfile/lhotse raise many types for broken files
        skips.add(f"{given} ({type(e).__name__})", "corrupt audio")
        return None
    if rec.num_samples <= 0:
        skips.add(given, "empty audio")
        return None
    if rec.num_channels > 1:
        skips.multichannel.append(str(given))
    return rec


def untranscribed_audio(audio: Iterable[Path], transcribed: set[str], skips: SkipLog) -> None:
    """Count the audio files whose id (file stem) has no transcript."""
    for path in sorted(audio):
        if path.stem not in transcribed and not path.name.startswith("._"):
            skips.add(path, "audio without transcript")


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


def read_lines(path: Path, skips: SkipLog, bad_ids: set[str] | None = None) -> list[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file, lines ending in ``\n`` or ``\r\n`` (a ``\r``
    inside a line is kept, not a line break: a transcript is never cut short); a line that does
    not decode is a counted skip naming file and line, and every other line is kept. ``bad_ids``
    collects the first field of such lines (an utterance id in transcript files), so that their
    audio is not counted again as "audio without transcript"."""
    skips.read(path)
    out = []
    raw_lines = Path(path).read_bytes().split(b"\n")   # \n and \r\n only: a lone \r is text
    if raw_lines[-1] == b"":
        raw_lines.pop()
    for n, raw in enumerate(raw_lines, 1):
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        try:
            out.append((n, raw.decode("utf-8")))
        except UnicodeDecodeError:
            skips.add(f"{path}:{n}", NOT_UTF8)
            if bad_ids is not None and raw.split():
                bad_ids.add(raw.split()[0].decode("utf-8", errors="replace"))
    if out and out[0][1].startswith("\ufeff"):
        out[0] = (out[0][0], out[0][1][1:])
    return out


class FirstOfEachId:
    """The first utterance of each id is kept; a later one is a counted skip that names its
    file and line and where the kept one is, and the rest of the corpus is prepared."""

    def __init__(self, skips: SkipLog):
        self.skips, self.where = skips, {}

    def __call__(self, utt: str, where: str) -> bool:
        if utt in self.where:
            self.skips.add(f"{where} (id {utt}; kept the one at {self.where[utt]})", "duplicate id")
            return False
        self.where[utt] = where
        return True


def drop_duplicates(corpus: str, part: str, data: PartData, skips: SkipLog) -> None:
    """A part never holds one id twice (a preparer that did not catch it at the line): the first
    cut / example of each id is kept, later ones are counted skips naming their audio file."""
    for name in ("recordings", "supervisions", "cuts"):
        items, seen = [], set()
        for item in getattr(data, name):
            if item.id not in seen:
                seen.add(item.id)
                items.append(item)
            elif name == "cuts":
                where = f"{corpus} {part}: {item.recording.sources[0].source} (id {item.id})"
                skips.add(where, "duplicate id")
        setattr(data, name, items)
    for task, examples in data.tasks.items():
        seen = set()
        data.tasks[task] = [e for e in examples if not (e.id in seen or seen.add(e.id))]


def read_text(path: Path, skips: SkipLog) -> str | None:
    """A small text file (VCTK: one sentence), or None when a line of it is not UTF-8 (counted)."""
    before = len(skips.entries)
    text = "\n".join(line for _, line in read_lines(path, skips))
    return None if len(skips.entries) > before else text


def read_tsv(path: Path, skips: SkipLog, header: bool = True) -> list:
    """Common Voice / CoVoST / CVSS tsv: tab separated, no quoting, backslash escapes."""
    lines = [line for _, line in read_lines(path, skips)]
    reader = (csv.DictReader if header else csv.reader)(
        lines, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
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
                    build: Callable[[SkipLog], dict[str, PartData]], force: bool = False,
                    run_name: str | None = None) -> bool:
    """Build and write a corpus unless an identical run already finished. True if it ran.

    ``inputs`` are the files known before building (their set and fingerprints are part of the
    parameters); files the build reads are noted in the skip log and fingerprinted too. The
    stamp and skip log are named after ``run_name`` (default: the corpus), one per independent
    run into the same directory; what the previous run of that name wrote and this one did not
    (fewer parts, no annotations) is removed.
    """
    out, name = Path(output_dir), run_name or corpus
    stamp = Stamp(out / f".{name}_stamp.json",
                  {"corpus": corpus, **params, "inputs": input_fingerprint(inputs)})
    if stamp.done(force):
        log.info("%s manifests in %s are up to date; nothing to do", name, out)
        return False
    skips = SkipLog(name)
    parts = build(skips)
    if not any(p.cuts for p in parts.values()):
        skips.write(out)
        raise CorpusLayoutError(f"{corpus}: no usable utterance found ({skips.counts()}); "
                                f"see {out / f'skipped_{name}.log'}")
    for part in [p for p, data in parts.items() if not data.cuts]:  # lhotse reads empty files as None
        log.warning("%s: part %s has no usable utterance; no manifests written for it", corpus, part)
        del parts[part]
    for part, data in parts.items():
        drop_duplicates(corpus, part, data, skips)
    previous = stamp.previous_outputs()
    outputs = [p for part, data in sorted(parts.items()) for p in write_part(out, corpus, part, data)]
    outputs.append(skips.write(out))
    kept = {p.resolve() for p in outputs}
    for stale in previous:
        if stale.resolve() not in kept and stale.is_file():
            log.info("%s: removing %s (written by the previous run, not by this one)", name, stale)
            stale.unlink()
    stamp.write(outputs, skips.inputs)
    return True
