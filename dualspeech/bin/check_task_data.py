"""Check task examples against the speech cuts they point to (recipe stages 2 and 5).

For every set (``corpus:part``) and task, each example of ``<tasks-dir>/<corpus>_<task>_<part>
.jsonl.gz`` is validated against the task schema (dualspeech.data.tasks) and each of its speech
roles (the primary cut and its links) must be a cut of ``<cuts-dir>/<corpus>_cuts_<part>.jsonl.gz``.
With ``--require-tokens`` the linked cuts must also carry what the task consumes: ``ustokens`` on
input speech, ``ustokens`` + ``acoustic_tokens`` on output speech, ``speaker_embedding`` on the
speaker prompt. Examples that fail are dropped, counted by reason and listed in
``<out-dir>/dropped.tsv``; the kept examples are written to ``<out-dir>`` under the same names
(the training data of stage 6), with a summary in ``<out-dir>/summary.tsv``. The run fails when
a set loses every example of a task it had, or when --max-drop-fraction is exceeded.
"""
from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

from lhotse import CutSet

from dualspeech.data.tasks import (TASKS, TaskSchemaError, parse_set, speech_cut_ids, speech_manifest_name,
                                   task_manifest_name, validate_example)
from dualspeech.utils.io import atomic_path, atomic_write_text
from dualspeech.utils.logs import setup_logging

log = logging.getLogger("dualspeech.check_task_data")


def required_fields(task: str, require_tokens: bool) -> dict[str, tuple[str, ...]]:
    """Speech role -> custom fields its cut must carry for ``task``."""
    spec = TASKS[task]
    if not require_tokens:
        return {}
    need: dict[str, tuple[str, ...]] = {r: ("ustokens",) for r in spec.input_speech}
    if spec.output_speech:
        need[spec.output_speech] = ("ustokens", "acoustic_tokens")
    if "speaker_ref" in spec.required_links:
        need["speaker_ref"] = ("speaker_embedding",)
    return need


def check_example(example, speech: dict, require_tokens: bool) -> str | None:
    """None when the example is usable, else the reason it is not."""
    try:
        spec = validate_example(example)
    except TaskSchemaError as e:
        return f"schema: {e}"
    roles = speech_cut_ids(example)
    for role, cut_id in roles.items():
        if cut_id not in speech:
            return f"missing speech cut for {role}"
    for role, fields in required_fields(spec.name, require_tokens).items():
        cut = speech[roles[role]]
        for name in fields:
            if not (cut.custom or {}).get(name):
                return f"no {name} on {role}"
    return None


def check_set(corpus: str, part: str, tasks_dir: Path, cuts_dir: Path, out_dir: Path,
              require_tokens: bool) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str]]]:
    """Check one set; returns ({task: (kept, total)}, [(example id, reason)])."""
    cuts_path = cuts_dir / speech_manifest_name(corpus, part)
    if not cuts_path.is_file():
        raise SystemExit(f"speech cuts {cuts_path} not found: run the earlier recipe stages "
                         f"(or check --cuts-dir)")
    speech = {c.id: c for c in CutSet.from_file(cuts_path)}
    counts, dropped = {}, []
    for task in TASKS:
        path = tasks_dir / task_manifest_name(corpus, task, part)
        if not path.is_file():
            continue
        kept, total = [], 0
        for example in CutSet.from_file(path):
            total += 1
            reason = check_example(example, speech, require_tokens)
            if reason is None:
                kept.append(example)
            else:
                dropped.append((f"{corpus}:{part}:{task}:{example.id}", reason))
        counts[task] = (len(kept), total)
        with atomic_path(out_dir / path.name) as tmp:
            CutSet.from_cuts(kept).to_file(tmp)
    if not counts:
        raise SystemExit(f"no task manifests {corpus}_<task>_{part}.jsonl.gz in {tasks_dir}")
    return counts, dropped


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.check_task_data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", required=True, metavar="CORPUS:PART")
    p.add_argument("--tasks-dir", type=Path, required=True, help="task example manifests")
    p.add_argument("--cuts-dir", type=Path, required=True, help="speech cut manifests")
    p.add_argument("--out-dir", type=Path, required=True, help="where the kept examples go")
    p.add_argument("--require-tokens", action="store_true",
                   help="linked cuts must carry ustokens / acoustic_tokens / speaker_embedding")
    p.add_argument("--max-drop-fraction", type=float, default=0.05,
                   help="fail when more than this fraction of a set's examples is dropped")
    args = p.parse_args(argv)
    setup_logging()
    rows, all_dropped, failures = [], [], []
    for name in args.sets:
        try:
            corpus, part = parse_set(name)
        except ValueError as e:
            raise SystemExit(f"--sets: {e}") from None
        counts, dropped = check_set(corpus, part, args.tasks_dir, args.cuts_dir, args.out_dir,
                                    args.require_tokens)
        all_dropped += dropped
        kept, total = (sum(v[i] for v in counts.values()) for i in (0, 1))
        for task, (k, t) in counts.items():
            rows.append(f"{corpus}\t{part}\t{task}\t{k}\t{t}")
            if t and not k:
                failures.append(f"{name} {task}: all {t} examples dropped")
        if total and (total - kept) / total > args.max_drop_fraction:
            failures.append(f"{name}: {total - kept} of {total} examples dropped "
                            f"(> --max-drop-fraction {args.max_drop_fraction})")
    atomic_write_text(args.out_dir / "summary.tsv", "corpus\tpart\ttask\tkept\ttotal\n"
                      + "".join(r + "\n" for r in rows))
    atomic_write_text(args.out_dir / "dropped.tsv", "".join(f"{i}\t{r}\n" for i, r in all_dropped))
    print("corpus\tpart\ttask\tkept\ttotal")
    print("\n".join(rows))
    if all_dropped:
        reasons = Counter(r.split(":")[0] if r.startswith("schema") else r for _, r in all_dropped)
        log.warning("dropped %d examples %s; listed in %s", len(all_dropped), dict(reasons),
                    args.out_dir / "dropped.tsv")
    if failures:
        raise SystemExit("task data check failed:\n  " + "\n  ".join(failures))
    return {"rows": rows, "dropped": all_dropped}


if __name__ == "__main__":
    main()
