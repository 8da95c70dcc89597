"""Writing prepared corpora: manifests, skip logs and stamps, shared by every preparer.

Every preparer (the mini generator and each real corpus) collects per split the recordings,
supervisions, speech cuts and task examples, then :func:`write_part` writes them as

    <out>/manifests/<corpus>_{recordings,supervisions}_<part>.jsonl.gz
    <out>/cuts/<corpus>_cuts_<part>.jsonl.gz
    <out>/tasks/<corpus>_<task>_<part>.jsonl.gz        (schema: dualspeech.data.tasks)

Files are gzip with a zeroed timestamp (byte-identical re-runs) and written atomically.
A stamp (``dualspeech.utils.stamp``) records what a finished run was made from and the size +
sha256 of what it wrote, so an unchanged re-run is a no-op and a damaged output is re-made;
a :class:`SkipLog` counts and lists inputs that were dropped (corrupt audio, empty text, ...)
and the files the build read, which the stamp fingerprints.
"""
from __future__ import annotations

import gzip
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from lhotse import MonoCut, Recording, SupervisionSegment
from lhotse.utils import fastcopy

from dualspeech.data.tasks import speech_manifest_name, task_manifest_name, validate_example
from dualspeech.utils.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)


def write_manifest(items: Iterable, path: str | Path) -> int:
    """Write lhotse manifest items (or plain dicts) as deterministic, atomic .jsonl.gz."""
    buf = io.BytesIO()
    n = 0
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
        for item in items:
            d = item if isinstance(item, dict) else item.to_dict()
            gz.write((json.dumps(d, ensure_ascii=False) + "\n").encode("utf-8"))
            n += 1
    atomic_write_bytes(path, buf.getvalue())
    return n


def speech_cut(recording: Recording, text: str, speaker: str | None, language: str = "English",
               gender: str | None = None, custom: dict | None = None) -> MonoCut:
    """One utterance = one recording with one supervision over all of it. A multi-channel
    recording keeps all its channels: audio loading downmixes them (mean, audio.to_mono)."""
    channel = recording.channel_ids if recording.num_channels > 1 else 0
    sup = SupervisionSegment(id=recording.id, recording_id=recording.id, start=0.0,
                             duration=recording.duration, channel=channel, text=text,
                             speaker=speaker, language=language, gender=gender,
                             custom=custom or None)
    return MonoCut(id=recording.id, start=0.0, duration=recording.duration, channel=channel,
                   recording=recording, supervisions=[sup])


def task_example(cut: MonoCut, task: str, links: dict[str, str] | None = None,
                 **fields) -> MonoCut:
    """A task example on ``cut`` (its primary speech), validated against the task schema."""
    custom = {"task": task, **{k: v for k, v in fields.items() if v is not None}}
    if links:
        custom["links"] = dict(links)
    example = fastcopy(cut, custom=custom)
    validate_example(example)
    return example


@dataclass
class PartData:
    """Everything one split of one corpus produces."""
    recordings: list = field(default_factory=list)
    supervisions: list = field(default_factory=list)
    cuts: list = field(default_factory=list)
    tasks: dict[str, list] = field(default_factory=dict)

    def add_cut(self, cut: MonoCut) -> None:
        self.recordings.append(cut.recording)
        self.supervisions.extend(cut.supervisions)
        self.cuts.append(cut)

    def add_example(self, example: MonoCut) -> None:
        self.tasks.setdefault(example.custom["task"], []).append(example)


def output_paths(output_dir: str | Path, corpus: str, part: str, tasks: Iterable[str]) -> list[Path]:
    out = Path(output_dir)
    paths = [out / "manifests" / f"{corpus}_{kind}_{part}.jsonl.gz"
             for kind in ("recordings", "supervisions")]
    paths.append(out / "cuts" / speech_manifest_name(corpus, part))
    paths += [out / "tasks" / task_manifest_name(corpus, t, part) for t in sorted(tasks)]
    return paths


def write_part(output_dir: str | Path, corpus: str, part: str, data: PartData) -> list[Path]:
    """Write one split's manifests; returns the paths written. Task ids must be unique."""
    for task, examples in data.tasks.items():
        dup = [i for i, c in Counter(e.id for e in examples).items() if c > 1]
        if dup:
            raise ValueError(f"{corpus} {task} {part}: duplicate example ids {dup[:5]}")
    paths = output_paths(output_dir, corpus, part, data.tasks)
    write_manifest(data.recordings, paths[0])
    write_manifest(data.supervisions, paths[1])
    write_manifest(data.cuts, paths[2])
    for path, task in zip(paths[3:], sorted(data.tasks)):
        write_manifest(data.tasks[task], path)
    log.info("%s %s: %d utterances, tasks %s", corpus, part, len(data.cuts),
             {t: len(v) for t, v in sorted(data.tasks.items())})
    return paths


class SkipLog:
    """Inputs dropped during preparation, counted by reason and listed in a log file.

    It also collects every file the build read (:meth:`read`), so the stamp can tell when an
    input changed: a fixed flac or an edited transcript makes the next run re-prepare.
    """

    def __init__(self, corpus: str):
        self.corpus = corpus
        self.entries: list[tuple[str, str]] = []
        self.inputs: set[str] = set()
        self.multichannel: list[str] = []     # kept, downmixed to mono (mean of channels)

    def add(self, item: str, reason: str) -> None:
        self.entries.append((str(item), reason))

    def read(self, path: str | Path) -> None:
        """Note that the build read (or looked for) ``path``."""
        self.inputs.add(str(Path(path).absolute()))

    def counts(self) -> dict[str, int]:
        return dict(Counter(r for _, r in self.entries))

    def write(self, output_dir: str | Path) -> Path:
        path = Path(output_dir) / f"skipped_{self.corpus}.log"
        lines = sorted(f"{reason}\t{item}" for item, reason in self.entries)
        atomic_write_text(path, "".join(line + "\n" for line in lines))
        if self.entries:
            log.warning("%s: skipped %d inputs %s; listed in %s", self.corpus, len(self.entries),
                        self.counts(), path)
        if self.multichannel:
            log.info("%s: %d multi-channel audio files (e.g. %s) are downmixed to mono (mean of "
                     "channels)", self.corpus, len(self.multichannel), min(self.multichannel))
        return path
