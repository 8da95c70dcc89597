"""The one place that defines what a task example looks like (the cut schema).

Two kinds of manifests exist per corpus and split:

* speech cuts ``data/cuts/<corpus>_cuts_<part>.jsonl.gz``: every utterance once. Token
  extraction adds ``ustokens`` (TemporalArray, frame_shift 0.04 s), ``acoustic_tokens``
  (TemporalArray, frame_shift 1/codec frame rate) and ``speaker_embedding`` (Array) here.
* task examples ``data/tasks/<corpus>_<task>_<part>.jsonl.gz``: a CutSet in which each cut is
  the example's *primary* utterance (see ``TaskSpec.primary``) and ``cut.custom`` holds:

  ``task``         one of TASKS
  text fields      ``text`` (transcript of the primary speech), ``question``, ``answer``,
                   ``source_text``, ``target_text``, ``source_lang``, ``target_lang``,
                   ``emotion`` (neutral | happy | sad | angry)
  ``links``        {role: cut id} pointing into the speech cuts of the same corpus and split:
                   ``target`` (output speech other than the primary cut), ``speaker_ref``
                   (another utterance of the output voice: the speaker prompt; never the
                   target itself), ``question`` (SC: the spoken question)

Which speech is input and which is output for each task is fixed here, so data preparation,
the training dataset and decoding all agree.
"""
from __future__ import annotations

from dataclasses import dataclass

EMOTIONS = ("neutral", "happy", "sad", "angry")
TEXT_FIELDS = ("text", "question", "answer", "source_text", "target_text", "source_lang",
               "target_lang", "emotion")
LINK_ROLES = ("target", "speaker_ref", "question")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str                       # "understanding" | "generation"
    primary: str                    # what the example's own cut is: "input" or "output" speech
    required_fields: tuple[str, ...]
    required_links: tuple[str, ...] = ()
    input_speech: tuple[str, ...] = ()   # roles whose USTokens the LLM reads ("primary" or a link)
    output_speech: str | None = None     # role of the speech to generate ("primary" or a link)
    answer_field: str | None = None      # text the LLM must produce (understanding tasks)
    description: str = ""


TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("asr", "understanding", "input", ("text",), (), ("primary",), None, "text",
             "English speech -> its transcript"),
    TaskSpec("s2tt", "understanding", "input",
             ("source_text", "target_text", "source_lang", "target_lang"), (), ("primary",),
             None, "target_text", "English speech -> German text"),
    TaskSpec("ser", "understanding", "input", ("emotion",), (), ("primary",), None, "emotion",
             "speech -> one of EMOTIONS"),
    TaskSpec("sqa", "understanding", "input", ("question", "answer"), (), ("primary",), None,
             "answer", "speech + text question -> text answer"),
    TaskSpec("tts", "generation", "output", ("text",), ("speaker_ref",), (), "primary", None,
             "text + speaker prompt -> speech of that text"),
    TaskSpec("t2st", "generation", "output",
             ("source_text", "target_text", "source_lang", "target_lang"), ("speaker_ref",),
             (), "primary", None, "Spanish/French text -> English speech"),
    TaskSpec("vc", "generation", "input", ("text",), ("target", "speaker_ref"), ("primary",),
             "target", None, "speech in voice A -> same words in the speaker_ref voice"),
    TaskSpec("sc", "generation", "input", ("question", "answer"), ("question", "target",
             "speaker_ref"), ("primary", "question"), "target", None,
             "spoken statement + spoken question -> spoken answer"),
)}
UNDERSTANDING = tuple(n for n, t in TASKS.items() if t.kind == "understanding")
GENERATION = tuple(n for n, t in TASKS.items() if t.kind == "generation")


class TaskSchemaError(ValueError):
    """A task example that lacks what its task needs."""


def validate_example(cut) -> TaskSpec:
    """Check one task-example cut against its TaskSpec; returns the spec."""
    custom = cut.custom or {}
    task = custom.get("task")
    if task not in TASKS:
        raise TaskSchemaError(f"cut {cut.id}: task={task!r}, expected one of {sorted(TASKS)}")
    spec = TASKS[task]
    missing = [f for f in spec.required_fields if custom.get(f) in (None, "")]
    links = custom.get("links") or {}
    missing += [f"links.{r}" for r in spec.required_links if not links.get(r)]
    if missing:
        raise TaskSchemaError(f"cut {cut.id} ({task}): missing {missing}")
    if task == "ser" and custom["emotion"] not in EMOTIONS:
        raise TaskSchemaError(f"cut {cut.id}: emotion {custom['emotion']!r} not in {EMOTIONS}")
    if links.get("speaker_ref") and links.get("speaker_ref") in (cut.id, links.get("target")):
        raise TaskSchemaError(f"cut {cut.id} ({task}): speaker_ref must be another utterance "
                              "than the target speech")
    return spec


def speech_cut_ids(cut) -> dict[str, str]:
    """Map every speech role of an example (``primary`` plus its links) to a speech cut id."""
    return {"primary": cut.id, **(cut.custom.get("links") or {})}


def parse_set(name: str) -> tuple[str, str]:
    """``corpus:part`` (a data set as recipes and commands name it) -> (corpus, part).

    The one parser of set names (the pipeline's ``sets_of`` only adds the recipe's corpus)."""
    corpus, sep, part = name.partition(":")
    if not sep or not corpus or not part or ":" in part:
        raise ValueError(f"data set {name!r} must look like corpus:part, e.g. mini:train")
    return corpus, part


def task_manifest_name(corpus: str, task: str, part: str) -> str:
    return f"{corpus}_{task}_{part}.jsonl.gz"


def speech_manifest_name(corpus: str, part: str) -> str:
    return f"{corpus}_cuts_{part}.jsonl.gz"
