"""results.json and the RESULTS.md table, with the paper's numbers side by side.

Layout of the markdown (one row per test set and metric):

| test set | task | n | metric | ours [95% CI] | controls [95% CI] | ground truth [95% CI] | <paper system> ... |

Under the title, a provenance paragraph: the commit the table was made at, the fingerprint of
the corpus it was made from (data/fingerprint.py) and, when that differs from the recipe's
reference, a warning naming what differs. README summaries find these in the lines below.

"controls" lists every control scored for that metric (metrics/controls.py), each with its
short label; a footnote says which is which and which scorer read the speech. Paper columns are
filled only where the score config maps the test set onto one of the paper's test sets
(``paper_refs``); our mini / debug test sets get "-" there.
"""
from __future__ import annotations

import json
from pathlib import Path

from dualspeech.metrics.controls import CONTROL_LABELS
from dualspeech.metrics.paper import TEST_KEYS, paper_value
from dualspeech.utils.io import atomic_write_text

METRIC_ORDER = ("wer", "cer", "bleu", "accuracy", "uar", "judge", "sim", "eoa", "length_ratio",
                "dnsmos_ovrl", "dnsmos_p808")
METRIC_LABELS = {"wer": "WER %", "cer": "CER %", "bleu": "BLEU-4", "accuracy": "accuracy %",
                 "uar": "UAR %", "judge": "LLM judge", "sim": "SIM", "eoa": "ended %",
                 "length_ratio": "length gen/ref", "dnsmos_ovrl": "DNSMOS OVRL",
                 "dnsmos_p808": "DNSMOS P.808"}


PROVENANCE = "Made at commit {commit} from the corpus with fingerprint {fingerprint}."
NO_FINGERPRINT = "none (the corpus has no fingerprint.json)"
WARNING = "**Corpus warning**: {}."


def provenance_notes(commit: str, fingerprint: str | None, warning: str | None = None) -> list[str]:
    """The paragraphs under the title: commit and corpus fingerprint, then any corpus warning."""
    notes = [PROVENANCE.format(commit=commit, fingerprint=fingerprint or NO_FINGERPRINT)]
    return notes + ([WARNING.format(warning)] if warning else [])


def _fmt(x: float | None, metric: str) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if metric in ("sim", "length_ratio") else f"{x:.2f}"


def _interval(est: dict | None, metric: str, exact: bool = False) -> str:
    if est is None:
        return "-"
    if exact:   # a number without sampling error (chance)
        return _fmt(est["value"], metric)
    return (f"{_fmt(est['value'], metric)} [{_fmt(est['ci_low'], metric)}, "
            f"{_fmt(est['ci_high'], metric)}]")


def _controls_cell(controls: dict, metric: str) -> str:
    shown = [f"{CONTROL_LABELS[c][0]} {_interval(est, metric, exact=c == 'chance')}"
             for c, est in sorted(controls.items(), key=lambda kv: list(CONTROL_LABELS).index(kv[0]))]
    return "; ".join(shown) or "-"


def markdown_table(results: dict, paper_systems: list[str], paper_refs: dict) -> str:
    head = (["test set", "task", "n", "metric", "ours [95% CI]", "controls [95% CI]",
             "ground truth [95% CI]"] + [f"paper: {s}" for s in paper_systems])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in sorted(results.items(), key=lambda kv: (kv[1]["task"], kv[0])):
        key = paper_refs.get(name)
        shown = name if key is None else f"{name} ({TEST_KEYS[key]})"
        for metric in sorted(res["metrics"], key=lambda m: METRIC_ORDER.index(m)
                             if m in METRIC_ORDER else len(METRIC_ORDER)):
            ours = _interval(res["metrics"][metric], metric)
            controls = _controls_cell(res.get("controls", {}).get(metric, {}), metric)
            truth = _interval(res.get("ground_truth", {}).get(metric), metric)
            paper = [_fmt(paper_value(s, key, metric), metric) for s in paper_systems]
            row = ([shown, res["task"], str(res["n"]), METRIC_LABELS.get(metric, metric), ours,
                    controls, truth] + paper)
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def control_notes(results: dict, asr_models: list[str]) -> str:
    """Footnote: which control each label is, what the ground-truth column is, which scorer."""
    used = {c for r in results.values() for by in r.get("controls", {}).values() for c in by}
    lines = [f"- {CONTROL_LABELS[c][0]}: {CONTROL_LABELS[c][1]}" for c in CONTROL_LABELS if c in used]
    if any("ground_truth" in r for r in results.values()):
        lines.append("- ground truth: the reference recording scored by the same scorer "
                     "(ASR: the test speech; generation tasks: the target speech)")
    if asr_models:
        lines.append(f"- speech (outputs, controls, ground truth) transcribed with "
                     f"{', '.join(asr_models)}")
    return ("\nControls and scorer:\n" + "\n".join(lines) + "\n") if lines else ""


def failure_notes(results: dict) -> str:
    """One line per test set (and control decode) with failed outputs or skipped scores."""
    notes = []
    for name, res in sorted(results.items()):
        runs = [("", res["counts"])] + [(f" [{c}]", counts) for c, counts
                                        in sorted(res.get("control_counts", {}).items())]
        for tag, counts in runs:
            bad = {k: v for k, v in counts.items() if k != "n" and v}
            if bad:
                notes.append(f"- {name}{tag}: " + ", ".join(f"{k}={v}" for k, v in sorted(bad.items())))
    return ("\nFailed outputs / skipped scores:\n" + "\n".join(notes) + "\n") if notes else ""


def write_report(results: dict, out_dir: Path, paper_systems: list[str], paper_refs: dict,
                 title: str = "Results", notes: list[str] = ()) -> tuple[Path, Path]:
    """Write ``results.json`` (summary, no per-utterance rows) and ``RESULTS.md``; ``notes``
    (provenance_notes) go under the title."""
    for name, key in paper_refs.items():
        if key not in TEST_KEYS:
            raise ValueError(f"paper_refs.{name}: {key!r} is not a paper test set; "
                             f"known: {sorted(TEST_KEYS)}")
    summary = {name: {k: v for k, v in res.items() if k != "per_utt"}
               for name, res in results.items()}
    json_path, md_path = out_dir / "results.json", out_dir / "RESULTS.md"
    atomic_write_text(json_path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    signatures = sorted({r["meta"]["bleu_signature"] for r in results.values()
                         if "bleu_signature" in r["meta"]})
    asr_models = sorted({r["meta"]["asr_model"] for r in results.values() if "asr_model" in r["meta"]})
    md = [f"# {title}\n"] + [f"\n{note}\n" for note in notes]
    md += ["\n" if notes else "", markdown_table(results, paper_systems, paper_refs)]
    if signatures:
        md.append("\nsacrebleu signature: " + "; ".join(f"`{s}`" for s in signatures) + "\n")
    md.append(control_notes(results, asr_models))
    md.append(failure_notes(results))
    atomic_write_text(md_path, "".join(md))
    return json_path, md_path
