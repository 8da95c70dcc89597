"""Config sections read by the USTokenizer code (``ustokenizer:``, ``llm:``, ``prompts:``,
``loss:``, ``data:``); each is a dataclass built with ``dualspeech.config.build``."""
from __future__ import annotations

from dataclasses import dataclass, field

from dualspeech.config import ConfigError
from dualspeech.data.tasks import UNDERSTANDING


@dataclass
class VQConfig:
    codebook_size: int = 1024
    dim: int = 1024                  # code vector size (paper: 1024)
    decay: float = 0.8               # EMA decay of the codebook statistics (reference code: 0.8)
    eps: float = 1e-5                # Laplace smoothing of the cluster sizes
    kmeans_init_batches: int = 4     # collect this many training batches, then k-means the codebook
    kmeans_iters: int = 20
    dead_code_steps: int = 50        # restart a code unused for this many training steps (0: never)


@dataclass
class USTokenizerConfig:
    whisper: str = "whisper:medium"  # dualspeech.pretrained spec of the frozen Whisper encoder
    pad_to_30s: bool = True          # reference behaviour; false = trimmed input (faster)
    channels: int | None = None      # encoder/decoder width; None = the Whisper width
    arch: str = "compact"            # compact | repcodec (the reference code's encoder/decoder)
    dilations: list[int] = field(default_factory=lambda: [1, 3])  # compact: one unit each
    vq: VQConfig = field(default_factory=VQConfig)


@dataclass
class LLMConfig:
    model: str = "hf:meta-llama/Llama-3.2-1B"  # frozen causal LM for the understanding loss
    dtype: str = "float32"           # "float32" | "bfloat16" (weights of the frozen LLM)
    gradient_checkpointing: bool = False

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"llm.dtype={self.dtype!r}: use float32 or bfloat16")


@dataclass
class PromptConfig:
    """SALMONN-style layout; every instruction paraphrase of a task is used (drawn per example)."""
    user_format: str = "USER: <Speech>{speech}</Speech> {instruction}\nASSISTANT:"
    asr: list[str] = field(default_factory=lambda: ["Recognize the speech and give me the transcription."])
    ser: list[str] = field(default_factory=lambda: ["What is the emotion of the speaker? Answer with one word."])
    sqa: list[str] = field(default_factory=lambda: ["{question}"])
    max_answer_tokens: int = 96      # longer answers are cut (logged once; reference: 300)
    answer_space: bool = True        # a space before the answer (reference: false, the answer
                                     # follows "ASSISTANT:" directly)

    def for_task(self, task: str) -> list[str]:
        if task not in ("asr", "ser", "sqa"):
            raise ValueError(f"the USTokenizer understanding loss has prompts for asr, ser and "
                             f"sqa only, not {task!r}")
        prompts = getattr(self, task)
        if not prompts:
            raise ValueError(f"prompts.{task} is empty: give at least one instruction")
        return prompts


@dataclass
class LossConfig:
    """L = alpha * L_commit + beta * L_under + gamma * L_recon (paper: 1, 5, 45)."""
    alpha: float = 1.0
    beta: float = 5.0
    gamma: float = 45.0
    use_commit: bool = True
    use_under: bool = True           # false: the LLM is not even loaded
    use_recon: bool = True


@dataclass
class USTokenizerDataConfig:
    """``data`` section of a USTokenizer config (not the DualSpeechLM one, data.dataset.DataConfig)."""
    tasks: list[str] = field(default_factory=lambda: ["asr", "ser", "sqa"])
    max_duration: float = 120.0      # seconds of audio per batch (per rank)
    max_cuts: int | None = None
    num_buckets: int = 10
    shuffle_buffer: int = 10000
    min_cut_duration: float = 0.04   # one token; shorter cuts are dropped (logged)
    min_seconds: float = 0.0         # shorter clips get trailing zeros up to this length
                                     # (reference: 1.0, so every clip gives >= 25 tokens)
    max_cut_duration: float = 30.0   # Whisper's window; longer cuts are dropped from training
    valid_max_cuts: int = 200        # validation uses at most this many examples per task

    def __post_init__(self):
        bad = [t for t in self.tasks if t not in UNDERSTANDING or t == "s2tt"]
        if bad or not self.tasks:
            raise ConfigError(f"data.tasks={self.tasks}: choose from asr, ser, sqa")
