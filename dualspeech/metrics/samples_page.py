"""The listening page of a run: ``samples.html`` with a few decoded examples per test set.

Like the paper's demo page, but for this run: per test set the first ``n`` examples (sorted
ids, whatever their status: no cherry-picking) with their input speech, speaker prompt
(TTS / VC / T2ST / SC), reference speech, generated speech and the control outputs
(resynthesis, untrained model) as HTML audio players, the texts (references, answer or
Whisper transcript) and the example's scores. Audio is copied next to the page as 16 kHz
Ogg Vorbis under ``samples/`` (a few KB per clip) and linked by relative path, so the page
still plays when the directory is moved or published.
"""
from __future__ import annotations

import html
import logging
import shutil
from pathlib import Path

import numpy as np

from dualspeech.data.tasks import TASKS, TEXT_FIELDS
from dualspeech.utils.io import atomic_write_text

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CONTROL_AUDIO = ("resynth", "untrained")     # control decodes whose speech is worth hearing
STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top}th{background:#eee}audio{width:14em;display:block;height:2.2em}
.clip{display:inline-block;margin:0 6px 4px 0;font-size:90%}.st{color:#a00}"""


def _write_clip(wave: np.ndarray, sr: int, dest: Path) -> None:
    import soundfile as sf

    from dualspeech.audio import resample

    wave = np.clip(resample(np.asarray(wave, dtype=np.float32), sr, SAMPLE_RATE), -1.0, 1.0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    sf.write(tmp, wave, SAMPLE_RATE, format="OGG", subtype="VORBIS")
    tmp.replace(dest)


def _split_name(name: str, task: str) -> tuple[str, str] | None:
    """``<corpus>_<task>_<part>[:<split>]`` -> (corpus, part)."""
    base = name.split(":")[0]
    corpus, sep, part = base.partition(f"_{task}_")
    return (corpus, part) if sep else None


class SamplesPage:
    """Collects audio and rows per test set, then writes the page."""

    def __init__(self, out_html: Path, data_root: Path | None = None, n_per_set: int = 3):
        self.out_html, self.data_root, self.n = Path(out_html), data_root, n_per_set
        self.audio_dir = self.out_html.parent / "samples"
        self.sections: list[str] = []
        self._examples: dict[tuple[str, str, str], dict] = {}

    def _cuts(self, name: str, task: str) -> dict:
        """Example id -> role -> speech cut, from the data root (empty without one)."""
        where = _split_name(name, task)
        if self.data_root is None or where is None:
            return {}
        key = (*where, task)
        if key not in self._examples:
            from dualspeech.data.dataset import load_examples

            try:
                exs = load_examples(self.data_root, [f"{where[0]}:{where[1]}"], tasks=(task,))[task]
            except FileNotFoundError as e:
                log.warning("samples page: no input audio for %s (%s)", name, e)
                exs = []
            self._examples[key] = {ex.id: ex.speech for ex in exs}
        return self._examples[key]

    def _clip_from_file(self, root: Path, rel: str | None, dest: Path) -> str | None:
        """``root / rel`` (a decode's wav or prompt path) as a clip; None when there is none."""
        from dualspeech.audio import load_audio

        if not rel or not (root / rel).is_file():
            return None
        wave, sr = load_audio(root / rel)
        _write_clip(wave, sr, dest)
        return dest.relative_to(self.out_html.parent).as_posix()

    def _clip_from_cut(self, cut, dest: Path) -> str | None:
        from dualspeech.audio import load_cut_audio

        if cut is None or not cut.has_recording:
            return None
        try:
            _write_clip(load_cut_audio(cut, SAMPLE_RATE), SAMPLE_RATE, dest)
        except Exception as e:  # noqa: BLE001 - lhotse raises several types; the page shows "-"
            log.warning("samples page: %s unreadable (%s)", cut.id, e)
            return None
        return dest.relative_to(self.out_html.parent).as_posix()

    def add(self, name: str, result: dict, records: list[dict], test_dir: Path,
            control_dirs: dict[str, Path]) -> None:
        """One test set: ``result`` as scored (with per_utt), ``records`` its hyp.jsonl rows."""
        task, spec = result["task"], TASKS[result["task"]]
        per_utt = {r["id"]: r for r in result["per_utt"]}
        cuts = self._cuts(name, task)
        control_recs = {c: _records_by_id(d / "hyp.jsonl") for c, d in control_dirs.items()
                        if c in CONTROL_AUDIO}
        safe = name.replace(":", "_")
        rows = []
        for rec in records[:self.n]:
            uid, speech = rec["id"], cuts.get(rec["id"], {})
            d = self.audio_dir / safe
            audio = [(f"input ({role})",
                      self._clip_from_cut(speech.get(role), d / f"{uid}_in_{role}.ogg"))
                     for role in spec.input_speech]
            if spec.kind == "generation":
                audio.append(("speaker prompt", self._clip_from_file(
                    test_dir, rec.get("prompt_wav"), d / f"{uid}_prompt.ogg")))
                audio.append(("reference", self._clip_from_cut(
                    speech.get(spec.output_speech), d / f"{uid}_ref.ogg")))
                audio.append(("generated", self._clip_from_file(
                    test_dir, rec.get("wav"), d / f"{uid}_gen.ogg")))
                for c, by_id in control_recs.items():
                    audio.append((c, self._clip_from_file(
                        control_dirs[c], by_id.get(uid, {}).get("wav"), d / f"{uid}_{c}.ogg")))
            rows.append(_row(rec, per_utt.get(uid, {}), audio))
        self.sections.append(f"<h2>{html.escape(name)} ({task}: {html.escape(spec.description)})"
                             f"</h2>\n<table>\n<tr><th>example</th><th>texts</th><th>scores</th>"
                             f"<th>audio</th></tr>\n" + "\n".join(rows) + "\n</table>")

    def write(self, title: str) -> Path:
        body = "\n".join(self.sections) or "<p>No decoded test sets.</p>"
        self.audio_dir.mkdir(parents=True, exist_ok=True)   # always there (the pipeline copies it)
        atomic_write_text(self.out_html, (
            f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            "<p>The first examples of each test set (sorted ids, not picked), with the scores "
            "of RESULTS.md per example. Audio: 16 kHz Ogg Vorbis copies.</p>\n"
            f"{body}\n</body></html>\n"))
        return self.out_html

    def reset(self) -> None:
        """Start from an empty samples/ dir (old clips of other ids must not linger)."""
        shutil.rmtree(self.audio_dir, ignore_errors=True)


def _records_by_id(path: Path) -> dict[str, dict]:
    import json

    if not path.is_file():
        return {}
    return {r["id"]: r for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip())}


def _scores(row: dict) -> list[str]:
    out = []
    for unit in ("wer", "cer"):
        if row.get(f"{unit}_ref_len"):
            rate = 100 * row[f"{unit}_errors"] / row[f"{unit}_ref_len"]
            out.append(f"{unit.upper()} {rate:.1f} %")
    if "label" in row:
        out.append(f"label {row['label']} ({'right' if row.get('correct') else 'wrong'})")
    for key, label in (("sim", "SIM"), ("sim_other_speaker", "SIM other spk"),
                       ("dnsmos_p808", "DNSMOS P.808"), ("judge", "judge")):
        if key in row:
            out.append(f"{label} {row[key]:.3f}")
    return out


def _row(rec: dict, scores: dict, audio: list[tuple[str, str | None]]) -> str:
    texts = [f"<b>{k}</b>: {html.escape(str(v))}" for k, v in rec["ref"].items()
             if k in TEXT_FIELDS]
    said = rec.get("text") if "text" in rec else scores.get("transcript")
    if said is not None:
        what = "answer" if "text" in rec else "Whisper transcript"
        texts.append(f"<b>{what}</b>: {html.escape(said) or '<i>(empty)</i>'}")
    status = rec["status"]
    head = html.escape(rec["id"]) + ("" if status == "ok" else
                                     f"<br><span class='st'>{html.escape(status)}</span>")
    players = "".join(
        f"<div class='clip'>{html.escape(label)}<audio controls preload='none' "
        f"src='{html.escape(src)}'></audio></div>" if src else
        f"<div class='clip'>{html.escape(label)}: -</div>"
        for label, src in audio) or "-"
    return (f"<tr><td>{head}</td><td>{'<br>'.join(texts)}</td>"
            f"<td>{'<br>'.join(map(html.escape, _scores(scores))) or '-'}</td>"
            f"<td>{players}</td></tr>")
