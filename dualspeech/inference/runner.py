"""Decode whole test sets: load examples, shard, batch, skip finished ids, write outputs.

A test set is one task manifest ``<root>/tasks/<corpus>_<task>_<part>.jsonl.gz`` (named
``<corpus>_<task>_<part>``). Its expected ids are ALL cuts of that manifest: an example that
cannot be decoded (schema error, a linked cut without tokens, longer than the model allows)
still gets a record with status ``skipped``, so scoring counts it instead of silently scoring
a smaller test set. ``decode.max_examples`` deliberately keeps only the first N sorted ids (a
quick look; the scored ``n`` shows it). Examples are split into shards by position in the sorted id list
(``shard k of n`` takes every n-th id), sorted by prompt length within a shard and decoded in
batches of ``decode.batch_size`` examples of one task.

Membership never depends on the ground truth: test examples are measured by their prompt only
(``TaskDataset(inference=True)``). A task whose output path is unavailable (generation without
a codec that matches the model's ids, e.g. Baseline-Semantic without a unit vocoder) fails
alone: each of its examples gets status ``no_output_path`` with the reason, and the other
test sets decode.
"""
from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from dualspeech.audio import load_cut_audio, save_wav
from dualspeech.config import save_config
from dualspeech.data.tasks import TASKS, TEXT_FIELDS, task_manifest_name
from dualspeech.inference.config import DecodeConfig
from dualspeech.inference.generate import BatchGenerator, Output, decode_isolated
from dualspeech.inference.outputs import HypWriter, merge_shards, shard_path

log = logging.getLogger(__name__)


def reference_fields(custom: dict | None) -> dict:
    """Text fields of a task example (the references the scorer needs)."""
    custom = custom or {}
    return {k: custom[k] for k in TEXT_FIELDS if custom.get(k) not in (None, "")}


def manifest_ids(path: Path) -> tuple[list[str], dict[str, dict]]:
    """All cut ids of a task manifest and their reference fields (also for skipped records)."""
    from lhotse import CutSet

    refs = {cut.id: reference_fields(cut.custom) for cut in CutSet.from_file(path)}
    return sorted(refs), refs


def cut_speaker(cut) -> str | None:
    """Speaker of a speech cut: its first supervision's, else a ``speaker`` custom field."""
    sups = getattr(cut, "supervisions", None) or []
    if sups and sups[0].speaker:
        return sups[0].speaker
    return (cut.custom or {}).get("speaker")


def output_path_problem(model, codec) -> str | None:
    """Why generation tasks cannot be decoded to speech (None: they can). The codec must know
    every id the model can emit: AcousticGPT's ``n_codes`` (or, without an AcousticGPT, the
    speech-token count) must equal the codec's codebook size."""
    if codec is None:
        return ("no codec: pass --codec-conf, set decode.codec, or give the model config a "
                "codec section")
    agpt = model.cfg.acoustic_gpt
    n, what = ((agpt.n_codes, "model.acoustic_gpt.n_codes") if agpt is not None else
               (model.cfg.speech.num_tokens, "model.speech.num_tokens"))
    if n != codec.codebook_size:
        return (f"{what}={n} but the codec {codec.identity} has {codec.codebook_size} codes: "
                "decode with the codec whose ids the model was trained on (--codec-conf of the "
                "acoustic-token extraction; a unit vocoder for unit-output models)")
    return None


class DecodeRunner:
    """Decodes the test sets of one model; the model, dataset settings and codec are shared."""

    def __init__(self, model, cfg: DecodeConfig, codec=None, data_cfg=None):
        from dualspeech.data.dataset import DataConfig

        self.model, self.cfg = model, cfg
        self.output_problem = output_path_problem(model, codec)
        if self.output_problem:
            log.error("generation test sets will not be decoded: %s", self.output_problem)
            codec = None
        if codec is not None:   # decode on the model's device; codecs return CPU numpy waves
            codec.to(next(model.parameters()).device)
        self.generator = BatchGenerator(model, cfg, codec)
        self.data_cfg = data_cfg or DataConfig()
        self.acoustic = model.acoustic_spec()

    def decode(self, root: Path, corpus: str, part: str, task: str, out_dir: Path,
               shard: int = 0, num_shards: int = 1, resolved_config: dict | None = None) -> dict:
        """Decode one test set's shard; merge when all shards are there. Returns counts."""
        from dualspeech.data.dataset import TaskDataset, load_examples

        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} is not in [0, {num_shards})")
        name = f"{corpus}_{task}_{part}"
        test_dir = out_dir / name
        manifest = root / "tasks" / task_manifest_name(corpus, task, part)
        if not manifest.is_file():
            raise FileNotFoundError(f"task manifest {manifest} not found")
        all_ids, refs = manifest_ids(manifest)
        cap = self.cfg.examples_cap(task)
        if cap is not None and len(all_ids) > cap:
            log.info("%s: decoding the first %d of %d examples (decode.max_examples[_by_task])",
                     name, cap, len(all_ids))
            all_ids = all_ids[:cap]
        mine = set(all_ids[shard::num_shards])
        if resolved_config is not None:
            save_config(resolved_config, test_dir, "decode_config.yaml")
        writer = HypWriter(shard_path(test_dir, shard, num_shards))
        todo_ids = mine - writer.done
        counts = {"done_before": len(mine & writer.done)}
        if TASKS[task].kind == "generation" and self.output_problem:
            for cid in sorted(todo_ids):
                writer.write({"id": cid, "task": task, "status": "no_output_path",
                              "ref": refs[cid], "error": self.output_problem})
            writer.close()
            log.error("%s: %d examples not decoded (no_output_path): %s", name, len(todo_ids),
                      self.output_problem)
            counts["no_output_path"] = len(todo_ids)
            counts["merged"] = merge_shards(test_dir, num_shards, all_ids)
            return counts
        try:
            examples, ds = [], None
            loaded = (load_examples(root, [f"{corpus}:{part}"], tasks=(task,))[task]
                      if todo_ids else [])
            loaded = [ex for ex in self.select_examples(loaded, all_ids) if ex.id in todo_ids]
            if loaded:
                try:
                    ds = TaskDataset({task: loaded}, self.model.templates, self.data_cfg,
                                     self.acoustic, inference=True)
                    examples = list(zip(ds.examples.get(task, []), ds.lengths.get(task, [])))
                except ValueError as e:   # raised when no example is usable
                    log.error("%s: %s", name, e)
            usable = {ex.id for ex, _ in examples}
            for cid in sorted(todo_ids - usable):
                writer.write({"id": cid, "task": task, "status": "skipped", "ref": refs[cid],
                              "error": "not decodable (see the decode log for the reason)"})
            counts["skipped"] = len(todo_ids - usable)
            examples.sort(key=lambda x: (x[1], x[0].id))
            if examples:
                counts.update(self._run(task, ds, [ex for ex, _ in examples], test_dir, writer))
        finally:
            writer.close()
        counts["merged"] = merge_shards(test_dir, num_shards, all_ids)
        return counts

    def select_examples(self, examples: list, all_ids: list[str]) -> list:
        """The examples to decode (a control may change their inputs: inference/controls.py)."""
        return examples

    def _run(self, task: str, ds, examples: list, test_dir: Path, writer: HypWriter) -> dict:
        """The one decode loop (the controls change only where outputs come from)."""
        kind = TASKS[task].kind
        bs = self.cfg.batch_size
        counts: dict[str, int] = {}
        for start in tqdm(range(0, len(examples), bs), desc=f"decode {test_dir.name}",
                          unit="batch", disable=None):
            chunk = examples[start:start + bs]
            for ex, out in zip(chunk, self._outputs(ds, task, chunk)):
                rec = {"id": ex.id, "task": task, **out.record(),
                       "ref": reference_fields(ex.fields)}
                if kind == "generation":
                    rec.update(self._save_audio(ex, out, test_dir))
                elif out.wave is not None:      # a reference control's input speech (ASR)
                    save_wav(test_dir / "wav" / f"{ex.id}.wav", out.wave, self._sample_rate())
                    rec["wav"] = f"wav/{ex.id}.wav"
                writer.write(rec)
                counts[out.status] = counts.get(out.status, 0) + 1
        return counts

    def _outputs(self, ds, task: str, chunk: list) -> list[Output]:
        return decode_isolated(self.generator, ds.collate_prompts, TASKS[task].kind, chunk)

    def _sample_rate(self) -> int:
        codec = self.generator.codec
        return codec.sample_rate if codec is not None else self.cfg.prompt_sample_rate

    def _save_audio(self, ex, out: Output, test_dir: Path) -> dict:
        # the reference speech's duration: scoring reports generated / reference length
        rec = {"ref_duration": float(ex.speech[TASKS[ex.task].output_speech].duration)}
        codec = self.generator.codec
        if out.wave is not None:
            save_wav(test_dir / "wav" / f"{ex.id}.wav", out.wave, codec.sample_rate)
            rec["wav"] = f"wav/{ex.id}.wav"
            rec["duration"] = len(out.wave) / codec.sample_rate
        ref_cut = ex.speech.get("speaker_ref")
        if ref_cut is not None:
            rec["speaker_ref"] = ref_cut.id
            speaker = cut_speaker(ref_cut)
            if speaker is not None:   # the different-speaker SIM control pairs prompts by it
                rec["prompt_speaker"] = speaker
        if self.cfg.save_prompt and ref_cut is not None and ref_cut.has_recording:
            sr = self.cfg.prompt_sample_rate
            try:
                wave = load_cut_audio(ref_cut, sr)
            except Exception as e:  # noqa: BLE001 - lhotse raises several types; SIM skips it
                log.warning("%s: speaker prompt %s unreadable (%s); no SIM for it", ex.id,
                            ref_cut.id, e)
                return rec
            save_wav(test_dir / "prompt" / f"{ex.id}.wav", wave, sr)
            rec["prompt_wav"] = f"prompt/{ex.id}.wav"
        return rec
