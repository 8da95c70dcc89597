"""The ``decode`` config section (egs/*/conf/decode_*.yaml).

Defaults are the paper's reference decoding: text answers sampled with T=0.6, top_p=0.9;
speech tokens sampled the same way up to 400 new tokens (stop at end-of-audio); AcousticGPT
sampled with top_k=10, T=1.0 up to 1000 codec frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dualspeech.data.tasks import GENERATION, TASKS, UNDERSTANDING

STRATEGIES = ("sample", "greedy", "beam")
# The one list of control decodes (``decode.control``; docs/metrics.md: controls) and the tasks
# each decodes. inference/controls.py runs them, metrics/controls.py scores and labels them, and
# the recipes ask `python -m dualspeech.bin.resolve_config --choices decode.control`.
CONTROL_TASKS = {
    "shuffled_speech": UNDERSTANDING,
    "untrained": GENERATION,
    "resynth": GENERATION,
    "ground_truth": ("asr",) + GENERATION,
}
CONTROLS = tuple(CONTROL_TASKS)
GROUND_TRUTH = "ground_truth"       # scored as its own column, not beside the model's numbers


@dataclass
class TextDecoding:
    strategy: str = "sample"        # sample | greedy | beam
    temperature: float = 0.6
    top_p: float = 0.9
    top_k: int = 0
    num_beams: int = 4              # beam only
    length_penalty: float = 1.0     # beam only
    max_new_tokens: int = 128

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"decode.text.strategy={self.strategy!r}; use one of {STRATEGIES}")


@dataclass
class SpeechDecoding:
    """LLM -> target speech tokens (USTokens) of generation tasks."""
    do_sample: bool = True
    temperature: float = 0.6
    top_p: float = 0.9
    top_k: int = 0
    max_new_tokens: int = 400       # guard: a sequence without end-of-audio stops here


@dataclass
class AcousticDecoding:
    """AcousticGPT -> codec ids."""
    top_k: int = 10
    temperature: float = 1.0
    max_len: int = 1000             # guard: at most this many codec frames per utterance
    maxlenratio: float | None = None  # guard: at most ceil(ratio * speech tokens) codec frames
                                    # (codec frame rate / speech-token rate, plus slack); null: off

    def __post_init__(self):
        if self.maxlenratio is not None and self.maxlenratio <= 0:
            raise ValueError(f"decode.acoustic.maxlenratio={self.maxlenratio}: use a positive "
                             "number of codec frames per speech token, or null")


STREAM_MODES = ("exact", "early")


@dataclass
class StreamDecoding:
    """Chunked speech output (``DualSpeech.stream``, ``bin/serve ?speech=stream``), in codec
    frames. ``exact``: chunks go out once AcousticGPT has ended, vocoded in windows that hold a
    codec's whole receptive field (``Codec.local_synthesis``), so they equal one-shot decoding;
    ``early``: chunks go out while AcousticGPT generates, each decoded from ``left`` frames
    before it to ``right`` frames after it: sooner, but the samples differ (docs/inference.md)."""
    mode: str = "exact"
    first: int = 8      # frames of the first chunk (its latency)
    chunk: int = 32     # frames of each later chunk (a window adds the context: fewer, longer
                        # chunks vocode less twice)
    left: int = 32      # early: frames of context before a chunk (already sent)
    right: int = 16     # early: frames of lookahead after a chunk

    def __post_init__(self):
        if self.mode not in STREAM_MODES:
            raise ValueError(f"decode.stream.mode={self.mode!r}; use one of {STREAM_MODES}")
        if min(self.chunk, self.first) < 1 or min(self.left, self.right) < 0:
            raise ValueError(f"decode.stream: chunk ({self.chunk}) and first ({self.first}) must "
                             f"be >= 1, left ({self.left}) and right ({self.right}) >= 0")


@dataclass
class DecodeConfig:
    batch_size: int = 16
    seed: int = 0
    max_examples: int | None = None  # decode only the first N ids (sorted) of each test set
    max_examples_by_task: dict = field(default_factory=dict)  # {task: N or null}: overrides it
    device: str = "cpu"
    text: TextDecoding = field(default_factory=TextDecoding)
    speech: SpeechDecoding = field(default_factory=SpeechDecoding)
    acoustic: AcousticDecoding = field(default_factory=AcousticDecoding)
    stream: StreamDecoding = field(default_factory=StreamDecoding)
    codec: dict | None = None       # codec section ({name: ..., options}); null: the model config's
    max_len: int | None = None      # longest prompt in LLM tokens; null: the model's data.max_len
    prompt_sample_rate: int = 16000  # rate of the saved speaker prompt wavs (SIM metric)
    save_prompt: bool = True        # write prompt/<id>.wav next to generated speech
    control: str | None = None      # a control decode instead of the model's (CONTROLS; null: none)

    def __post_init__(self):
        if self.control is not None and self.control not in CONTROLS:
            raise ValueError(f"decode.control={self.control!r}; use one of {CONTROLS} or null "
                             "(docs/metrics.md: controls)")
        caps = {"max_examples": self.max_examples,
                **{f"max_examples_by_task.{t}": n for t, n in self.max_examples_by_task.items()}}
        for where, n in caps.items():
            if n is not None and (not isinstance(n, int) or n < 1):
                raise ValueError(f"decode.{where}={n!r}: use a positive count, "
                                 "or null for the whole test set")
        unknown = sorted(set(self.max_examples_by_task) - set(TASKS))
        if unknown:
            raise ValueError(f"decode.max_examples_by_task: unknown task(s) {unknown}; "
                             f"tasks: {sorted(TASKS)}")

    def examples_cap(self, task: str) -> int | None:
        """How many test examples of ``task`` to decode (None: all)."""
        return self.max_examples_by_task.get(task, self.max_examples)
