"""Model input of one task example, in one place: the speech fields it needs, whether it fits
the model, and its rendered + tokenised record.

The in-memory dataset (``dataset.py``), the streamed one (``streaming.py``) and the stage-5
shard writer (``shard_writing.py``) all decide here, so an example one of them keeps is kept by
the others, for the same reason and with the same words in the log; both datasets build their
training batches with the one ``collate_encoded``.
"""
from __future__ import annotations

import numpy as np
import torch

from dualspeech.data.tasks import TASKS
from dualspeech.data.templates import IGNORE, Encoded


def needed_fields(task: str, field: str, acoustic_field: str | None,
                  with_target: bool = True) -> list[tuple[str, str]]:
    """(speech role, cut custom field) pairs an example of ``task`` must carry. ``field``: the
    LLM's speech tokens (``model.speech.field``); ``acoustic_field``: AcousticGPT's codec ids, or
    None (no acoustic stage); ``with_target=False``: decoding, which never reads the target."""
    spec = TASKS[task]
    out = spec.output_speech
    need = [(r, field) for r in spec.input_speech]
    if out and with_target:
        need.append((out, field))
        if acoustic_field:
            need.append((out, acoustic_field))
    if out and acoustic_field:
        need.append(("speaker_ref", "speaker_embedding"))
    return need


def missing_field(task: str, speech: dict, field: str, acoustic_field: str | None,
                  with_target: bool = True) -> str | None:
    """Why the example whose speech cuts are ``speech`` (role -> cut) cannot be used, or None."""
    for role, name in needed_fields(task, field, acoustic_field, with_target):
        if role not in speech:
            return f"no {role} speech cut"
        if not speech[role].has_custom(name):
            return f"no {name!r} on the {role} speech cut (run token extraction)"
    return None


def length_checks(n_llm, n_codes, max_len: int, acoustic, generation: bool) -> list[tuple[str, object]]:
    """``(reason, fits)`` in order for LLM sequence length(s) ``n_llm`` and codec frames
    ``n_codes`` (ints or numpy arrays of equal shape). An example is kept when every check fits
    and is counted under the first that does not. ``acoustic``: the model's ``AcousticSpec`` or
    None; ``generation``: the task trains AcousticGPT."""
    checks = [(f"longer than data.max_len={max_len}", np.asarray(n_llm) <= max_len)]
    if acoustic is not None and generation:
        checks += [("condition exceeds acoustic_gpt.cond_block_size", acoustic.condition_fits(n_llm)),
                   ("acoustic tokens exceed acoustic_gpt.block_size", acoustic.tokens_fit(n_codes))]
    return checks


def frames(cut, name: str) -> int:
    """Length of the (Temporal)Array custom field ``name`` of ``cut``, read from the manifest."""
    arr = cut.custom[name]
    shape = getattr(arr, "shape", None)
    if shape is None:
        raise ValueError(f"cut {cut.id}: custom field {name!r} is not a lhotse (Temporal)Array")
    return int(shape[0])


def load_tokens(cut, name: str) -> np.ndarray:
    """1-D integer ids of custom field ``name`` of ``cut``."""
    arr = np.asarray(cut.load_custom(name))
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"cut {cut.id}: {name!r} must hold 1-D integer ids (one codebook), got "
                         f"shape {arr.shape} dtype {arr.dtype}")
    return arr


def encode_example(templates, acoustic_field: str, task: str, cut, speech: dict) -> dict:
    """One shard record from a task-example cut and its speech cuts (role -> cut)."""
    spec, field = TASKS[task], templates.vocab.cfg.field
    out = spec.output_speech
    return render_record(
        templates, task, cut, {r: load_tokens(speech[r], field) for r in spec.input_speech},
        load_tokens(speech[out], field) if out else None,
        load_tokens(speech[out], acoustic_field) if out else None,
        speech["speaker_ref"].load_custom("speaker_embedding") if out else None)


def render_record(templates, task: str, cut, inputs: dict, target=None, codes=None,
                  speaker=None) -> dict:
    """One shard record: rendered ids (+ codec ids and speaker embedding of the output speech)."""
    enc = templates.encode(task, cut.custom, inputs, target)
    rec = {"cut": cut, "input_ids": np.asarray(enc.input_ids, dtype=np.int32),
           "prompt_len": enc.prompt_len, "target_span": enc.target_span}
    if TASKS[task].output_speech:
        codes = np.asarray(codes)
        rec["acoustic_tokens"] = codes.astype(np.int16 if codes.max(initial=0) < 2 ** 15 else np.int32)
        rec["speaker_embedding"] = np.asarray(speaker, dtype=np.float32).reshape(-1)
    return rec


def pad_id(templates) -> int:
    """The id right padding uses: the tokenizer's pad token, else the end-of-text id."""
    tok = templates.vocab.tokenizer
    return tok.pad_token_id if tok.pad_token_id is not None else templates.eos_id


def collate_encoded(enc: list[Encoded], tasks: list[str], pad_id: int, acoustic=None,
                    codes: list | None = None, speakers: list | None = None) -> dict:
    """Training batch of encoded examples (right padded; ids as lists or numpy arrays);
    ``codes`` / ``speakers``: AcousticGPT targets and speaker embeddings of the generation
    examples, in order."""
    input_ids = pad_right([e.input_ids for e in enc], pad_id)
    labels = pad_right([e.labels for e in enc], IGNORE)
    pos = torch.arange(input_ids.shape[1])[None, :]
    attention_mask = (pos < torch.tensor([len(e.input_ids) for e in enc])[:, None]).long()
    prompt_len = torch.tensor([e.prompt_len for e in enc])[:, None]
    spans = torch.tensor([e.target_span or (0, 0) for e in enc])
    batch = {
        "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
        "is_generation": torch.tensor([TASKS[t].kind == "generation" for t in tasks]),
        "prompt_mask": pos < prompt_len,
        "target_mask": (pos >= spans[:, :1]) & (pos < spans[:, 1:]),
        "tasks": list(tasks),
        "n_tokens": int(attention_mask.sum()),
    }
    if acoustic is not None:
        idx = [i for i, t in enumerate(tasks) if TASKS[t].kind == "generation"]
        batch["acoustic_index"] = torch.tensor(idx, dtype=torch.long)
        if idx:
            batch["acoustic_tokens"], batch["acoustic_mask"] = acoustic.layout.targets(codes)
            batch["speaker_embedding"] = speaker_matrix(speakers, acoustic.spk_dim)
    return batch


def pad_right(seqs: list, pad: int) -> torch.Tensor:
    """(B, T) LongTensor of id sequences padded on the right (numpy: one copy per row)."""
    out = np.full((len(seqs), max(len(s) for s in seqs)), pad, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return torch.from_numpy(out)


def speaker_matrix(rows: list, dim: int) -> torch.Tensor:
    """(B, dim) float32 speaker prompts; a wrong size names the config entry to fix."""
    rows = [np.asarray(r, dtype=np.float32).reshape(-1) for r in rows]
    bad = {r.shape[0] for r in rows} - {dim}
    if bad:
        raise ValueError(f"speaker embeddings have {sorted(bad)} dims, acoustic_gpt.spk_dim is {dim}")
    return torch.from_numpy(np.stack(rows))
