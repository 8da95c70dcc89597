"""Score one decoded test set: read its ``hyp.jsonl``, compute the task's paper metrics.

Which metrics a task gets (PAPER.md section 3):
  asr   WER (CER optional)            s2tt  BLEU-4 vs target_text
  ser   accuracy, UAR (parsed labels) sqa   BLEU-4 vs answer, LLM judge (optional)
  tts   SIM, WER (Whisper), DNSMOS    vc    SIM, WER (Whisper), DNSMOS
  t2st  BLEU-4 of Whisper transcript  sc    BLEU-4 of Whisper transcript, LLM judge (optional)
Failed outputs (status other than "ok") stay in the test set: an empty text counts as all
deletions / zero BLEU matches; a missing wav is transcribed as "" and is excluded (and
counted) only from SIM and DNSMOS, which need audio. Records of an understanding task that
carry a wav instead of a text (the ground-truth control of ASR) are transcribed by the scorer.
Controls computed here (metrics/controls.py): SER chance and majority class, and the SIM of
each output to another speaker's prompt (records' ``prompt_speaker``).
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dualspeech.data.tasks import TASKS
from dualspeech.metrics.bootstrap import Estimate, bootstrap, mean_metric
from dualspeech.metrics.controls import other_speaker_partners, ser_controls
from dualspeech.metrics.judge import JudgeConfig
from dualspeech.metrics.labels import (UNPARSED, correct_mask, parse_emotion, recall_stats,
                                      unweighted_average_recall)
from dualspeech.metrics.text import bleu_from_stats, bleu_stats, edit_counts, error_rate
from dualspeech.metrics.transcript_cache import transcribe_files_cached
from dualspeech.pretrained import cache_dir

log = logging.getLogger(__name__)


@dataclass
class ScoreConfig:
    n_bootstrap: int = 1000
    seed: int = 0
    cer: bool = False                       # also report CER where WER is reported
    normalizer: str = "whisper_english"     # for WER/CER: whisper_english | basic | none
    bleu_tokenize: str = "13a"
    asr_model: str = "whisper:tiny.en"      # transcribes generated speech (paper: large-v3)
    asr_engine: str = "auto"                # auto (ct2 unless a .pt / random:) | ct2 | openai
    asr_compute_type: str = "auto"          # ct2 only: auto (int8 CPU, float16 CUDA) | float32 ...
    asr_batch_size: int = 8
    asr_max_tokens: int = 224               # per 30 s window (Whisper's own limit)
    asr_max_tokens_per_s: float | None = None   # cap by audio length (None: Whisper's 224)
    asr_cache: bool = True                  # reuse a set's transcripts when its audio is unchanged
    device: str = "cpu"
    # SIM: speaker-encoder section as dualspeech.tokenizers.speaker builds it (paper: wavlm_sv)
    speaker: dict = field(default_factory=lambda: {"name": "resemblyzer"})
    dnsmos: bool = True
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    paper_systems: list[str] = field(default_factory=lambda: ["DualSpeechLM-USToken"])
    paper_refs: dict = field(default_factory=dict)   # test-set name -> paper.TEST_KEYS key
    split_by: dict = field(default_factory=dict)     # test-set name -> ref field to split on,
                                                     # e.g. t2st by source_lang -> "<name>:es"

    def __post_init__(self):
        from dualspeech.metrics.transcribe import ENGINES

        if self.asr_engine not in ENGINES:
            raise ValueError(f"score.asr_engine={self.asr_engine!r}: expected one of {ENGINES}")


class Resources:
    """Lazily built heavy scorers, shared across test sets of one run."""

    def __init__(self, cfg: ScoreConfig):
        self.cfg = cfg

    @functools.cached_property
    def asr(self):
        from dualspeech.metrics.transcribe import build_transcriber

        return build_transcriber(self.cfg.asr_model, self.cfg.asr_engine, self.cfg.device,
                                 self.cfg.asr_batch_size, max_tokens=self.cfg.asr_max_tokens,
                                 max_tokens_per_s=self.cfg.asr_max_tokens_per_s,
                                 compute_type=self.cfg.asr_compute_type)

    @functools.cached_property
    def sim(self):
        from dualspeech.metrics.speaker_sim import SpeakerSimilarity

        return SpeakerSimilarity(self.cfg.speaker, self.cfg.device)

    @functools.cached_property
    def dnsmos(self):
        from dualspeech.metrics.dnsmos import DNSMOS

        return DNSMOS()

    @functools.cached_property
    def judge(self):
        from dualspeech.metrics.judge import LLMJudge

        return LLMJudge(self.cfg.judge)


def read_hyps(path: Path) -> list[dict]:
    """Records of a ``hyp.jsonl``; every line needs ``id``, ``task``, ``status`` and ``ref``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m dualspeech.bin.decode` first")
    records = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            missing = [k for k in ("id", "task", "status", "ref") if k not in rec]
            if missing:
                raise ValueError(f"{path}:{n}: record lacks {missing}")
            records.append(rec)
    if not records:
        raise ValueError(f"{path} has no records")
    tasks = {r["task"] for r in records}
    if len(tasks) != 1 or next(iter(tasks)) not in TASKS:
        raise ValueError(f"{path}: expected one task of {sorted(TASKS)}, found {sorted(tasks)}")
    return records


def split_records(name: str, records: list[dict], cfg: ScoreConfig) -> dict[str, list[dict]]:
    """One test set, or one per value of ``cfg.split_by[name]`` (named ``<name>:<value>``)."""
    key = cfg.split_by.get(name)
    if key is None:
        return {name: records}
    groups: dict[str, list[dict]] = {}
    for r in records:
        if key not in r["ref"]:
            raise ValueError(f"{name}: split_by field {key!r} missing in the record of {r['id']}")
        groups.setdefault(f"{name}:{r['ref'][key]}", []).append(r)
    return groups


def _wav(rec: dict, root: Path, key: str = "wav") -> Path | None:
    rel = rec.get(key)
    return root / rel if rel and (root / rel).is_file() else None


def _rate_estimate(errors: np.ndarray, ref_len: np.ndarray, cfg: ScoreConfig) -> Estimate:
    stats = np.stack([errors, ref_len], axis=1)
    return bootstrap(stats, lambda s: error_rate(s[:, 0], s[:, 1]), cfg.n_bootstrap, cfg.seed)


def _wer(refs, hyps, per_utt, cfg, prefix="") -> dict[str, Estimate]:
    out = {}
    for unit, name in [("word", "wer")] + ([("char", "cer")] if cfg.cer else []):
        counts = edit_counts(refs, hyps, unit, cfg.normalizer)
        for row, e, n in zip(per_utt, counts.errors, counts.ref_len):
            row[f"{prefix}{name}_errors"], row[f"{prefix}{name}_ref_len"] = int(e), int(n)
        out[name] = _rate_estimate(counts.errors, counts.ref_len, cfg)
    return out


def _bleu(refs, hyps, per_utt, cfg, meta) -> dict[str, Estimate]:
    bs = bleu_stats(refs, hyps, cfg.bleu_tokenize)
    meta["bleu_signature"] = bs.signature
    for row, s in zip(per_utt, bs.stats):
        row["bleu_stats"] = [int(x) for x in s]
    return {"bleu": bootstrap(bs.stats, lambda s: bleu_from_stats(s.sum(axis=0)),
                              cfg.n_bootstrap, cfg.seed)}


def _mean(values: list[float], cfg: ScoreConfig) -> Estimate:
    return bootstrap(np.asarray(values, dtype=float), mean_metric, cfg.n_bootstrap, cfg.seed)


def score_records(records: list[dict], root: Path, cfg: ScoreConfig, res: Resources) -> dict:
    """Metrics of one test set -> {"task", "n", "metrics", "counts", "meta", "per_utt"}."""
    task = records[0]["task"]
    spec = TASKS[task]
    per_utt = [{"id": r["id"], "status": r["status"]} for r in records]
    counts = {"n": len(records), "failed": sum(r["status"] != "ok" for r in records)}
    meta: dict = {}
    metrics: dict[str, Estimate] = {}
    ref = [r["ref"] for r in records]

    controls: dict[str, dict[str, Estimate]] = {}
    spoken = spec.kind == "generation" or any("text" not in r and "wav" in r for r in records)
    if not spoken:
        hyps = [r.get("text") or "" for r in records]
        for row, h in zip(per_utt, hyps):
            row["hyp"] = h
    else:   # speech out (or the ground-truth control of ASR: the test speech) -> transcript
        wavs = [_wav(r, root) for r in records]
        counts["missing_wav"] = sum(w is None for w in wavs)
        present = [i for i, w in enumerate(wavs) if w is not None]
        cache = cache_dir() / "transcripts" if cfg.asr_cache else None
        texts = transcribe_files_cached(res.asr, [str(wavs[i]) for i in present], cache)
        hyps = [""] * len(records)
        for i, t in zip(present, texts):
            hyps[i] = t
        meta["asr_model"] = cfg.asr_model
        meta["asr_engine"] = f"{res.asr.engine} {res.asr.precision}" if present else cfg.asr_engine
        for row, h in zip(per_utt, hyps):
            row["transcript"] = h

    if task == "asr":
        metrics.update(_wer([x["text"] for x in ref], hyps, per_utt, cfg))
    elif task == "s2tt" or task == "t2st":
        metrics.update(_bleu([x["target_text"] for x in ref], hyps, per_utt, cfg, meta))
    elif task == "ser":
        labels = [parse_emotion(h) for h in hyps]
        refs = [x["emotion"] for x in ref]
        counts["unparsed"] = labels.count(UNPARSED)
        ok = correct_mask(refs, labels)
        for row, lab, c in zip(per_utt, labels, ok):
            row["label"], row["correct"] = lab, bool(c)
        metrics["accuracy"] = bootstrap(ok, lambda s: 100.0 * s.mean(), cfg.n_bootstrap, cfg.seed)
        metrics["uar"] = bootstrap(recall_stats(refs, labels), unweighted_average_recall,
                                   cfg.n_bootstrap, cfg.seed)
        controls.update(ser_controls(refs, cfg.n_bootstrap, cfg.seed))
    elif task in ("sqa", "sc"):
        metrics.update(_bleu([x["answer"] for x in ref], hyps, per_utt, cfg, meta))
    if task in ("tts", "vc"):
        metrics.update(_wer([x["text"] for x in ref], hyps, per_utt, cfg))
        metrics.update(_speech_quality(records, root, per_utt, counts, cfg, res, controls))
    if spec.kind == "generation":
        metrics.update(_endings(records, per_utt, cfg))
    if task in ("sqa", "sc") and cfg.judge.enabled:
        judged = [res.judge.score(x["question"], x["answer"], h, x.get("text", ""))
                  for x, h in zip(ref, hyps)]
        for row, j in zip(per_utt, judged):
            row["judge"] = j
        metrics["judge"] = _mean(judged, cfg)
        meta["judge_model"] = cfg.judge.model
    return {"task": task, "n": len(records), "metrics": {k: v.to_dict() for k, v in metrics.items()},
            "controls": {m: {c: e.to_dict() for c, e in by.items()} for m, by in controls.items()},
            "counts": counts, "meta": meta, "per_utt": per_utt}


def _endings(records, per_utt, cfg) -> dict[str, Estimate]:
    """How generation ended: ``eoa`` = % of outputs whose speech tokens and codec ids both
    stopped by themselves (status ok: no length guard, not empty); ``length_ratio`` = generated
    / reference duration (records written before decoding recorded durations have none)."""
    ended = np.asarray([r["status"] == "ok" for r in records], dtype=float)
    out = {"eoa": _mean(100.0 * ended, cfg)}
    ratios = []
    for row, r in zip(per_utt, records):
        if r.get("duration") is not None and r.get("ref_duration"):
            row["length_ratio"] = r["duration"] / r["ref_duration"]
            ratios.append(row["length_ratio"])
    if ratios:
        out["length_ratio"] = _mean(ratios, cfg)
    return out


def _other_speaker_sim(records, sim_pairs, per_utt, cfg, res) -> list[float]:
    """SIM of each output to the prompt of an example whose prompt speaker differs."""
    speakers = [records[i].get("prompt_speaker") for i, _, _ in sim_pairs]
    partners = other_speaker_partners(speakers, cfg.seed)
    todo = [(k, j) for k, j in enumerate(partners) if j is not None]
    if not todo:
        return []
    sims = res.sim.similarity_files([str(sim_pairs[j][2]) for _, j in todo],
                                    [str(sim_pairs[k][1]) for k, _ in todo])
    out = []
    for (k, _), s in zip(todo, sims):
        if s is not None:
            per_utt[sim_pairs[k][0]]["sim_other_speaker"] = s
            out.append(s)
    return out


def _speech_quality(records, root, per_utt, counts, cfg, res, controls) -> dict[str, Estimate]:
    out: dict[str, Estimate] = {}
    pairs = [(i, _wav(r, root), _wav(r, root, "prompt_wav")) for i, r in enumerate(records)]
    sim_pairs = [(i, w, p) for i, w, p in pairs if w is not None and p is not None]
    counts["sim_skipped"] = len(records) - len(sim_pairs)
    if sim_pairs:
        sims = res.sim.similarity_files([str(p) for _, _, p in sim_pairs],
                                        [str(w) for _, w, _ in sim_pairs])
        scored = [(i, s) for (i, _, _), s in zip(sim_pairs, sims) if s is not None]
        counts["sim_skipped"] += len(sim_pairs) - len(scored)
        for i, s in scored:
            per_utt[i]["sim"] = s
        if scored:
            out["sim"] = _mean([s for _, s in scored], cfg)
        other = _other_speaker_sim(records, sim_pairs, per_utt, cfg, res)
        counts["other_speaker_skipped"] = len(records) - len(other)
        if other:
            controls["sim"] = {"other_speaker": _mean(other, cfg)}
    if cfg.dnsmos:
        scores = {}
        for i, w, _ in pairs:
            if w is None:
                continue
            try:
                scores[i] = res.dnsmos.score_file(w)
            except ValueError as e:  # empty wav
                log.warning("DNSMOS skipped for %s: %s", records[i]["id"], e)
        counts["dnsmos_skipped"] = len(records) - len(scores)
        for i, s in scores.items():
            per_utt[i].update({f"dnsmos_{k}": v for k, v in s.items()})
        if scores:
            out["dnsmos_ovrl"] = _mean([s["ovrl"] for s in scores.values()], cfg)
            out["dnsmos_p808"] = _mean([s["p808"] for s in scores.values()], cfg)
    return out
