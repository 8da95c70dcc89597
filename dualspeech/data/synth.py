"""Pluggable text-to-speech through one command template (default: espeak-ng).

Synthetic data (the mini corpus, spoken SQA for SC) is made by running a TTS *command* per
utterance. The command is a template with placeholders, so any engine with a command line can
be plugged in without code::

    espeak-ng -v {voice} -s {rate} -p {pitch} -a {amplitude} -w {wav} {text}     (default)
    mytts --voice {voice} --out {wav} {text}
    piper --model voices/{voice}.onnx --output_file {wav}                        (text on stdin)

Placeholders: ``{wav}`` (required: the file the engine must write, any sample rate / channels
soundfile can read), ``{text}`` (the text as ONE argument), ``{text_file}`` (a UTF-8 file holding
the text), ``{voice}``, ``{rate}``, ``{pitch}``, ``{amplitude}``, ``{lang}`` (from ``Voice``).
Without ``{text}`` and ``{text_file}`` the text is written to the command's stdin. The template
is split like a shell line (shlex) but run WITHOUT a shell, so text never needs quoting.

Whatever the engine writes is converted to 16-bit mono wav at the requested sample rate, and
the same inputs give byte-identical files (espeak-ng and soxr resampling are deterministic).
"""
from __future__ import annotations

import logging
import shlex
import shutil
import string
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from dualspeech.audio import AudioError, load_audio, save_wav
from dualspeech.utils.io import atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "espeak-ng -v {voice} -s {rate} -p {pitch} -a {amplitude} -w {wav} {text}"
PLACEHOLDERS = ("wav", "text", "text_file", "voice", "rate", "pitch", "amplitude", "lang")


class SynthesisError(RuntimeError):
    """The TTS command is missing, failed, or wrote no usable audio."""


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker / speaking style. ``name`` is the engine's voice name."""
    name: str
    pitch: int = 50       # espeak-ng 0..99
    rate: int = 160       # words per minute
    amplitude: int = 100  # espeak-ng 0..200
    lang: str = "en"


@dataclass(frozen=True)
class SynthJob:
    wav: str              # output path (16-bit mono wav)
    text: str
    voice: Voice


class TTSCommand:
    """Run a TTS command template for one utterance and normalise its output format."""

    def __init__(self, template: str = DEFAULT_TEMPLATE, sample_rate: int = 16000):
        self.template = template
        self.sample_rate = sample_rate
        self.argv = shlex.split(template)
        if not self.argv:
            raise SynthesisError("empty TTS command template")
        unknown = {f for a in self.argv for f in _fields(a)} - set(PLACEHOLDERS)
        if unknown:
            raise SynthesisError(f"TTS template {template!r}: unknown placeholders {sorted(unknown)}; "
                                 f"allowed: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        if not any("{wav}" in a for a in self.argv):
            raise SynthesisError(f"TTS template {template!r} must contain {{wav}}: the output file")
        if shutil.which(self.argv[0]) is None:
            raise SynthesisError(f"TTS program {self.argv[0]!r} not found on PATH (template "
                                 f"{template!r}). Install it (tools/install.sh installs espeak-ng) "
                                 "or pass another engine with --tts-command.")
        self.uses_stdin = not any("{text}" in a or "{text_file}" in a for a in self.argv)

    def describe(self) -> dict:
        """What determines the audio: recorded in the stamps of the corpora made with it."""
        return {"template": self.template, "sample_rate": self.sample_rate}

    def synthesize(self, text: str, voice: Voice, out_path: str | Path) -> None:
        if not text.strip():
            raise SynthesisError(f"empty text for {out_path}")
        with tempfile.TemporaryDirectory(prefix="dualspeech-tts-") as tmp:
            values = {**asdict(voice), "voice": voice.name, "text": text,
                      "wav": str(Path(tmp) / "out.wav"), "text_file": str(Path(tmp) / "text.txt")}
            Path(values["text_file"]).write_text(text + "\n", encoding="utf-8")
            argv = [a.format(**values) for a in self.argv]
            proc = subprocess.run(argv, input=text.encode() if self.uses_stdin else None,
                                  capture_output=True)
            if proc.returncode != 0:
                raise SynthesisError(f"TTS command failed ({proc.returncode}): {shlex.join(argv)}\n"
                                     f"{proc.stderr.decode(errors='replace')[-2000:]}")
            try:
                wave, _ = load_audio(values["wav"], self.sample_rate)
            except AudioError as e:
                raise SynthesisError(f"TTS command wrote no readable wav: {shlex.join(argv)}: {e}\n"
                                     f"{proc.stderr.decode(errors='replace')[-2000:]}") from e
        if wave.size == 0:
            raise SynthesisError(f"TTS command wrote empty audio for {text!r}: {shlex.join(argv)}")
        save_wav(out_path, wave, self.sample_rate)


def synthesize_all(engine: TTSCommand, jobs: list[SynthJob], nj: int = 2,
                   desc: str = "synthesising") -> int:
    """Make every job's wav that does not exist yet, ``nj`` TTS processes at a time.

    Each file is written atomically, so an interrupted run resumes where it stopped. Returns the
    number of files made. Threads suffice: the work happens in the TTS subprocesses and soxr.
    """
    todo = [j for j in jobs if not Path(j.wav).exists()]
    if not todo:
        return 0
    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        results = pool.map(lambda j: engine.synthesize(j.text, j.voice, j.wav), todo)
        for _ in tqdm(results, total=len(todo), desc=desc, unit="utt", mininterval=2.0):
            pass
    log.info("%s: made %d of %d wavs (%d existed)", desc, len(todo), len(jobs), len(jobs) - len(todo))
    return len(todo)


def claim_audio_dir(audio_dir: str | Path, digest: str, force: bool = False) -> None:
    """Make ``audio_dir`` belong to one set of synthesis parameters (``digest``).

    Wavs are reused across interrupted runs, which is only right if they were made with the same
    parameters: a directory marked with another digest (or ``force``) is emptied first.
    """
    audio_dir = Path(audio_dir)
    marker = audio_dir / ".params"
    if audio_dir.exists() and (force or not marker.exists() or marker.read_text() != digest):
        log.info("removing audio made with other parameters: %s", audio_dir)
        shutil.rmtree(audio_dir)
    atomic_write_text(marker, digest)


def _fields(arg: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
