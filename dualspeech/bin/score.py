"""Score decoded test sets with the paper's metrics: ``python -m dualspeech.bin.score``.

Reads ``<decode-dir>/<test_set>/hyp.jsonl`` (written by ``dualspeech.bin.decode``) for every
test set found (or those named with ``--test-sets``), and writes into ``--out-dir``:
``results.json`` (corpus metrics with bootstrap 95% CIs, failure counts, BLEU signatures),
``RESULTS.md`` (markdown table with the paper's numbers side by side) and
``per_utt/<test_set>.jsonl`` (per-utterance scores). ``--control-dir`` adds the control decodes
(``<control-dir>/<control>/<test_set>/hyp.jsonl``, written with ``decode.control``) as columns
beside each metric; their per-utterance scores go to ``controls/<control>/per_utt/``.
``--samples-html`` writes the listening page (a few examples per test set with audio players;
``--data-root`` supplies the input and reference speech). The table names the commit it was
made at and the corpus fingerprint (``--corpus-fingerprint``); with ``--reference-fingerprint``
a corpus that differs from the reference gets a warning beside the table.
See docs/metrics.md.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from dualspeech.config import add_config_args, build, config_from_args, save_config
from dualspeech.data.fingerprint import compare_message, describe, read_fingerprint
from dualspeech.inference.config import CONTROLS
from dualspeech.metrics.controls import DECODE_CONTROLS, attach_controls
from dualspeech.metrics.report import provenance_notes, write_report
from dualspeech.metrics.samples_page import SamplesPage
from dualspeech.metrics.scoring import (Resources, ScoreConfig, read_hyps, score_records,
                                        split_records)
from dualspeech.utils.io import atomic_write_text
from dualspeech.utils.logs import setup_logging
from dualspeech.utils.provenance import source_commit

log = logging.getLogger("dualspeech.score")


def find_test_sets(decode_dir: Path, names: list[str] | None) -> dict[str, Path]:
    found = {p.parent.name: p for p in sorted(decode_dir.glob("*/hyp.jsonl"))}
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise SystemExit(f"no hyp.jsonl for {missing} under {decode_dir} "
                             f"(found: {sorted(found) or 'none'})")
        found = {n: found[n] for n in names}
    if not found:
        raise SystemExit(f"no <test_set>/hyp.jsonl under {decode_dir}: run "
                         "`python -m dualspeech.bin.decode` first")
    return found


def score_dir(test_sets: dict[str, Path], out_dir: Path, cfg: ScoreConfig,
              resources: Resources, label: str = "") -> dict:
    """Score every test set (split per ``score.split_by``); per-utterance rows to out_dir."""
    results = {}
    for set_name, path in test_sets.items():
        for name, records in split_records(set_name, read_hyps(path), cfg).items():
            log.info("scoring %s%s (%s, %d utterances)", label, name, records[0]["task"],
                     len(records))
            res = score_records(records, path.parent, cfg, resources)
            atomic_write_text(out_dir / "per_utt" / f"{name}.jsonl",
                              "".join(json.dumps(r) + "\n" for r in res["per_utt"]))
            results[name] = res
            shown = ", ".join(f"{k}={v['value']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
                              for k, v in res["metrics"].items())
            log.info("%s%s: %s", label, name, shown)
            if "bleu_signature" in res["meta"] and not label:
                print(f"{name}: sacrebleu {res['meta']['bleu_signature']}")
    return results


def score_controls(control_dir: Path, test_sets: dict[str, Path], out_dir: Path,
                   cfg: ScoreConfig, resources: Resources) -> dict[str, dict]:
    """Scores of the control decodes found under ``control_dir`` for the scored test sets."""
    if not control_dir.is_dir():
        raise SystemExit(f"--control-dir {control_dir} does not exist: decode the controls "
                         "first (decode.control; the pipeline's --controls true)")
    out = {}
    for control in CONTROLS:
        found = {name: control_dir / control / name / "hyp.jsonl" for name in test_sets
                 if (control_dir / control / name / "hyp.jsonl").is_file()}
        if found:
            out[control] = score_dir(found, out_dir / "controls" / control, cfg, resources,
                                     f"[{control}] ")
    log.info("controls scored: %s", {c: sorted(r) for c, r in out.items()} or "none found")
    return out


def write_samples_page(out_html: Path, results: dict, test_sets: dict[str, Path],
                       cfg: ScoreConfig, args) -> Path:
    page = SamplesPage(out_html, args.data_root, args.samples_per_set)
    page.reset()
    for set_name, path in test_sets.items():
        controls = ({c: args.control_dir / c / set_name for c in DECODE_CONTROLS}
                    if args.control_dir is not None else {})
        for name, records in split_records(set_name, read_hyps(path), cfg).items():
            page.add(name, results[name], records, path.parent, controls)
    log.info("wrote the listening page %s", out_html)
    return page.write(f"{args.title}: listening page")


def corpus_notes(fingerprint_path: Path | None, reference_path: Path | None) -> list[str]:
    """Provenance paragraphs of RESULTS.md: commit, corpus fingerprint, corpus warning."""
    try:
        fingerprint = read_fingerprint(fingerprint_path) if fingerprint_path else None
        reference = read_fingerprint(reference_path) if reference_path else None
    except ValueError as e:
        raise SystemExit(f"ERROR: {e}") from e
    warning = None
    if fingerprint is not None and reference is not None:
        warning = compare_message(fingerprint, reference, str(reference_path))
    elif reference is not None:
        warning = (f"the corpus has no fingerprint, so it cannot be compared with the reference "
                   f"{reference_path}")
    if warning:
        log.warning("%s", warning)
    return provenance_notes(source_commit(), fingerprint and describe(fingerprint), warning)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m dualspeech.bin.score", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--decode-dir", required=True, type=Path,
                        help="directory with one <test_set>/hyp.jsonl per decoded test set")
    parser.add_argument("--out-dir", type=Path, help="where results go (default: --decode-dir)")
    parser.add_argument("--test-sets", nargs="+", help="score only these test sets")
    parser.add_argument("--title", default="Results", help="heading of RESULTS.md")
    parser.add_argument("--control-dir", type=Path,
                        help="dir with <control>/<test_set>/hyp.jsonl control decodes "
                             f"({', '.join(CONTROLS)})")
    parser.add_argument("--samples-html", type=Path,
                        help="write the listening page here (audio copies in samples/ beside it)")
    parser.add_argument("--samples-per-set", type=int, default=3,
                        help="examples per test set on the listening page")
    parser.add_argument("--data-root", type=Path,
                        help="dir with tasks/ and cuts/ of the decoded sets (input and reference "
                             "speech on the listening page)")
    parser.add_argument("--corpus-fingerprint", type=Path,
                        help="the corpus's fingerprint.json (named in RESULTS.md)")
    parser.add_argument("--reference-fingerprint", type=Path,
                        help="the fingerprint the committed results were made with: a corpus "
                             "that differs gets a warning beside the table")
    args = parser.parse_args(argv)
    setup_logging()
    notes = corpus_notes(args.corpus_fingerprint, args.reference_fingerprint)   # bad files: now
    raw = config_from_args(args)
    cfg = build(ScoreConfig, raw.get("score"), "score")
    out_dir = args.out_dir or args.decode_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(raw, out_dir, "score_config.yaml")

    resources = Resources(cfg)
    test_sets = find_test_sets(args.decode_dir, args.test_sets)
    results = score_dir(test_sets, out_dir, cfg, resources)
    if args.control_dir is not None:
        attach_controls(results, score_controls(args.control_dir, test_sets, out_dir, cfg,
                                                resources))
    if args.samples_html is not None:
        write_samples_page(args.samples_html, results, test_sets, cfg, args)
    json_path, md_path = write_report(results, out_dir, cfg.paper_systems, cfg.paper_refs,
                                      args.title, notes)
    print(md_path.read_text())
    log.info("wrote %s and %s", json_path, md_path)
    return results


if __name__ == "__main__":
    main()
