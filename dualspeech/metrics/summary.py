"""README's results summary, rendered from a committed RESULTS.md so its numbers cannot drift.

A README quoting numbers by hand goes stale the moment a table is re-made. Instead README holds a
marked block that this module renders from the table stage 8 wrote (metrics/report.py): the
headline metric rows of each task with their controls and ground truth, the commit and corpus
fingerprint the table names, any corpus warning, and which understanding rows are beyond their
shuffled-speech control with non-overlapping 95 % intervals (that claim is computed, not typed).
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from dataclasses import dataclass, field
from pathlib import Path

from dualspeech.metrics.controls import CONTROL_LABELS
from dualspeech.metrics.report import PROVENANCE, WARNING

BEGIN = ("<!-- results-summary: generated from {source} by `python -m dualspeech.bin.results_summary`;"
         " edit the table there, not here -->")
END = "<!-- results-summary: end -->"
# the rows a summary shows: per task, its headline metrics (labels as RESULTS.md prints them)
HEADLINE = {"asr": ("WER %",), "s2tt": ("BLEU-4",), "sqa": ("BLEU-4",), "ser": ("accuracy %",),
            "tts": ("WER %", "SIM"), "t2st": ("BLEU-4",), "vc": ("WER %", "SIM"), "sc": ("BLEU-4",)}
UNDERSTANDING = ("asr", "s2tt", "ser", "sqa")
LOWER_IS_BETTER = ("WER %", "CER %")
SHUFFLED = CONTROL_LABELS["shuffled_speech"][0]
_NUMBER = r"-?\d+(?:\.\d+)?"
_ESTIMATE = re.compile(rf"^(?P<label>.*?)\s*(?P<v>{_NUMBER})(?: \[(?P<lo>{_NUMBER}), (?P<hi>{_NUMBER})\])?$")
_PROVENANCE = re.compile("^" + re.escape(PROVENANCE).replace(r"\{commit\}", "(?P<commit>.+?)")
                         .replace(r"\{fingerprint\}", "(?P<fingerprint>.+)") + "$")
_WARNING = WARNING.split("{}")[0]


@dataclass(frozen=True)
class Estimate:
    """A number as RESULTS.md printed it (strings: rounding them again must not drift)."""
    value: str
    low: str | None = None
    high: str | None = None


@dataclass
class Row:
    test_set: str
    task: str
    n: str
    metric: str
    ours: Estimate | None
    controls: dict[str, Estimate] = field(default_factory=dict)
    truth: Estimate | None = None


@dataclass
class Results:
    title: str
    commit: str | None
    fingerprint: str | None
    warning: str | None
    rows: list[Row]


def _estimate(cell: str) -> tuple[str, Estimate] | None:
    m = _ESTIMATE.match(cell.strip())
    if m is None:
        return None
    return m["label"], Estimate(m["v"], m["lo"], m["hi"])


def parse_results(text: str, source: str = "RESULTS.md") -> Results:
    """The title, provenance and main table (the first one, as stage 8 wrote it) of a RESULTS.md."""
    lines = text.splitlines()
    title = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), "")
    commit = fingerprint = warning = None
    for ln in lines:
        if m := _PROVENANCE.match(ln):
            commit, fingerprint = m["commit"], m["fingerprint"]
        elif ln.startswith(_WARNING) and warning is None:
            warning = ln
    start = next((i for i, ln in enumerate(lines) if ln.startswith("| test set | task | n | metric |")),
                 None)
    if start is None:
        raise ValueError(f"{source} has no results table (a header row '| test set | task | n | "
                         "metric | ...' as stage 8 writes it)")
    rows = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        if len(cells) < 7:
            raise ValueError(f"{source}: a results row has {len(cells)} cells, expected >= 7: {ln}")
        ours = _estimate(cells[4])
        controls = {}
        for part in cells[5].split(";"):
            parsed = _estimate(part) if part.strip() != "-" else None
            if parsed is not None:
                controls[parsed[0]] = parsed[1]
        truth = _estimate(cells[6])
        rows.append(Row(cells[0], cells[1], cells[2], cells[3], ours and ours[1], controls,
                        truth and truth[1]))
    return Results(title, commit, fingerprint, warning, rows)


def _short(x: str, metric: str) -> str:
    """One decimal (SIM: three), rounded half up from the printed digits."""
    return str(Decimal(x).quantize(Decimal("0.001" if metric == "SIM" else "0.1"), ROUND_HALF_UP))


def _show(est: Estimate | None, metric: str) -> str:
    if est is None:
        return "-"
    if est.low is None:
        return _short(est.value, metric)
    return f"{_short(est.value, metric)} [{_short(est.low, metric)}, {_short(est.high, metric)}]"


def beyond_shuffled(row: Row) -> bool | None:
    """Is the row better than its shuffled-speech control with non-overlapping intervals?
    None when it has no such control (or no intervals)."""
    control = row.controls.get(SHUFFLED)
    if row.ours is None or control is None or None in (row.ours.low, control.low):
        return None
    if row.metric in LOWER_IS_BETTER:
        return float(row.ours.high) < float(control.low)
    return float(row.ours.low) > float(control.high)


def _fingerprint_id(fingerprint: str | None) -> str:
    if fingerprint is None:
        return "not recorded"
    head = fingerprint.split(" (")[0]
    return head if re.fullmatch(r"[0-9a-f]{12}", head) else fingerprint


def render(results: Results, source: str) -> str:
    """The block between README's markers (markers included)."""
    made = (f"made at commit {results.commit} from the corpus with fingerprint "
            f"{_fingerprint_id(results.fingerprint)}" if results.commit
            else "which names no commit or corpus fingerprint")
    out = [BEGIN.format(source=source), "",
           f"From [{source}]({source}) ({results.title}), {made}.", ""]
    if results.warning:
        out += [results.warning, ""]
    out += ["| task | test set | n | metric | demo [95 % CI] | controls [95 % CI] | ground truth |",
            "|---|---|---|---|---|---|---|"]
    beyond, within = [], []
    for row in sorted(results.rows, key=lambda r: (list(HEADLINE).index(r.task)
                                                   if r.task in HEADLINE else len(HEADLINE), r.test_set)):
        if row.metric not in HEADLINE.get(row.task, ()):
            continue
        ours = _show(row.ours, row.metric)
        verdict = beyond_shuffled(row)
        if row.task in UNDERSTANDING and verdict is not None:
            (beyond if verdict else within).append(f"{row.task.upper()} {row.metric}")
            if verdict:
                ours = f"**{ours}**"
        controls = "; ".join(f"{label} {_show(est, row.metric)}" for label, est in row.controls.items())
        out.append(f"| {row.task.upper()} | {row.test_set} | {row.n} | {row.metric} | {ours} | "
                   f"{controls or '-'} | {_show(row.truth, row.metric)} |")
    out.append("")
    if beyond or within:
        claim = "Beyond their shuffled-speech control with non-overlapping 95 % intervals (bold): "
        claim += ", ".join(beyond) or "none"
        claim += "; not beyond it: " + (", ".join(within) or "none") + "."
        out += [claim, ""]
    return "\n".join(out + [END])


def replace_block(readme: str, block: str, readme_name: str = "README.md") -> str:
    """``readme`` with its results-summary block replaced by ``block``."""
    begin = readme.find("<!-- results-summary: generated from ")
    end = readme.find(END)
    if begin < 0 or end < begin:
        raise ValueError(f"{readme_name} has no results-summary block: put the two lines\n"
                         f"{BEGIN.format(source='egs/mini/RESULTS.md')}\n{END}\nwhere the summary "
                         "goes, then run this again")
    return readme[:begin] + block + readme[end + len(END):]


def summarize(results_md: Path, source: str) -> str:
    return render(parse_results(results_md.read_text(), str(results_md)), source)

