"""Does a trained DualSpeechLM listen? ``python -m dualspeech.bin.listening_gap``.

    python -m dualspeech.bin.listening_gap --model exp/default/dualspeechlm_mini/model \
        --data-root dump/default --sources mini:dev [--max-examples 24]

For each understanding task it prints the answer CE with the examples' own input speech, the CE
with another example's speech (the shuffled_speech derangement), and their difference. A gap of
about 0 means that the model answers from the prompt and its priors, not from the audio
(dualspeech/inference/listening.py). Last line: ``mean_listening_gap=<mean over tasks>``.
"""
from __future__ import annotations

import argparse

import torch

from dualspeech.utils.logs import setup_logging


def main(argv=None) -> None:
    setup_logging()
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.listening_gap", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a trained model: exp dir, its model/ or a checkpoint dir")
    p.add_argument("--data-root", required=True, help="dump dir with cuts/ and tasks/ (the recipe's --dumpdir)")
    p.add_argument("--sources", nargs="+", required=True, metavar="CORPUS:PART", help="e.g. mini:dev")
    p.add_argument("--max-examples", type=int, default=24, help="first N examples (by id) per task")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="seed of the speech derangement")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from dualspeech.config import build
    from dualspeech.data.dataset import DataConfig, load_examples
    from dualspeech.data.tasks import UNDERSTANDING
    from dualspeech.inference.listening import listening_gaps
    from dualspeech.models.io import load_model

    model = load_model(args.model).eval()
    data_cfg = build(DataConfig, model.full_config["data"], "data")
    examples = load_examples(args.data_root, args.sources, UNDERSTANDING)
    gaps = listening_gaps(model, examples, data_cfg, args.max_examples, args.batch_size, args.seed)
    if not gaps:
        raise SystemExit(f"no understanding task with >= 2 examples in {args.sources} under "
                         f"{args.data_root}/tasks")
    print(f"{'task':6} {'n':>4} {'matched CE':>11} {'shuffled CE':>12} {'gap':>8}")
    for g in gaps:
        print(f"{g.task:6} {g.n:4d} {g.matched_ce:11.3f} {g.shuffled_ce:12.3f} {g.gap:8.3f}")
    print(f"mean_listening_gap={sum(g.gap for g in gaps) / len(gaps):.4f}")


if __name__ == "__main__":
    main()
