"""Prepare a real corpus into Lhotse manifests + task examples (one subcommand per corpus).

Writes OUTPUT_DIR/manifests/<corpus>_{recordings,supervisions}_<part>.jsonl.gz,
OUTPUT_DIR/cuts/<corpus>_cuts_<part>.jsonl.gz, OUTPUT_DIR/tasks/<corpus>_<task>_<part>.jsonl.gz
and OUTPUT_DIR/skipped_<corpus>.log (inputs dropped and why). An unchanged re-run is a no-op;
--force re-runs. `python -m dualspeech.bin.prepare_corpus <corpus> --help` shows the expected
on-disk layout of each corpus. docs/data.md has the details.
"""
from __future__ import annotations

import argparse
import sys

from dualspeech.data.corpora import (covost2, cvss, iemocap, libriheavy, librispeech, libritts_r,
                                     sc, vctk)
from dualspeech.data.corpora.common import CorpusLayoutError
from dualspeech.data.synth import DEFAULT_TEMPLATE, SynthesisError
from dualspeech.utils.logs import setup_logging


def _lang_dir(value: str) -> tuple[str, str]:
    lang, sep, path = value.partition("=")
    if not sep or not lang or not path:
        raise argparse.ArgumentTypeError(f"expected LANG=DIR (e.g. es=/data/cv-corpus-4/es), got {value!r}")
    return lang, path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.prepare_corpus", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="corpus", required=True, metavar="CORPUS")

    def add(name, module, help_text):
        s = sub.add_parser(name, help=help_text, description=f"{help_text}\n\n{module.__doc__}\n"
                           f"Expected layout:\n{module.LAYOUT}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        s.add_argument("--corpus-dir", required=True, help="corpus root (see layout above)")
        s.add_argument("--output-dir", required=True, help="e.g. data (manifests/, cuts/, tasks/ go here)")
        s.add_argument("--force", action="store_true", help="re-run even if up to date")
        return s

    s = add("librispeech", librispeech, "LibriSpeech: ASR, plus SQA from SALMONN annotations")
    s.add_argument("--parts", nargs="+", help="LibriSpeech parts (default: all present)")
    s.add_argument("--sqa-json", nargs="*", default=[],
                   help="SALMONN-style SQA annotation JSON files (or directories of them)")
    s.add_argument("--nj", type=int, default=2, help="threads reading audio headers")
    s = add("libritts_r", libritts_r, "LibriTTS-R: TTS (manifests prefixed libritts_r)")
    s.add_argument("--parts", nargs="+", help="parts (default: all present)")
    s.add_argument("--seed", type=int, default=0, help="seed for the speaker prompts")
    s.add_argument("--nj", type=int, default=2)
    s = add("covost2", covost2, "CoVoST 2 En->De over Common Voice English: S2TT")
    s.add_argument("--covost-dir", help="directory with covost_v2.en_de*.tsv (default: --corpus-dir)")
    s.add_argument("--nj", type=int, default=2)
    s = add("cvss", cvss, "CVSS-C Es/Fr->En: T2ST")
    s.add_argument("--cv-dir", type=_lang_dir, action="append", default=[], metavar="LANG=DIR",
                   help="Common Voice directory of a source language (holds validated.tsv)")
    s.add_argument("--langs", nargs="+", default=["es", "fr"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--nj", type=int, default=2)
    s = add("iemocap", iemocap, "IEMOCAP: SER (Sessions 1-4 train, 5 test; 4 classes)")
    s.add_argument("--nj", type=int, default=2)
    s = add("libriheavy", libriheavy, "Libriheavy over Libri-Light: VC training subset")
    s.add_argument("--librilight-dir", required=True, help="Libri-Light audio root (small/ medium/ large/)")
    s.add_argument("--subset", default="small", help="Libriheavy manifest: small, medium, large, ...")
    s.add_argument("--hours", type=float, default=1000.0, help="hours to select (paper: 1000)")
    s.add_argument("--seed", type=int, default=0)
    s = add("vctk", vctk, "VCTK: the seeded VC evaluation pairs")
    s.add_argument("--num-pairs", type=int, default=400)
    s.add_argument("--mic", default="mic2", help="VCTK 0.92 microphone (mic1 | mic2)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--nj", type=int, default=2)
    s = add("sc", sc, "SC: SALMONN SQA over LibriSpeech, question/answer synthesised by TTS")
    s.add_argument("--sqa-json", nargs="+", required=True,
                   help="SALMONN-style SQA annotation JSON files (or directories of them)")
    s.add_argument("--tts-command", default=DEFAULT_TEMPLATE, help="TTS command template (docs/data.md)")
    s.add_argument("--max-per-part", type=int, help="seeded subset size per LibriSpeech part")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--nj", type=int, default=2, help="parallel TTS processes")
    return p


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        prepare(args)
    except (CorpusLayoutError, SynthesisError) as e:
        sys.exit(f"ERROR: {e}")


def prepare(args: argparse.Namespace) -> None:
    common = dict(corpus_dir=args.corpus_dir, output_dir=args.output_dir, force=args.force)
    if args.corpus == "librispeech":
        librispeech.prepare_librispeech(**common, parts=args.parts, sqa_annotations=args.sqa_json,
                                        num_jobs=args.nj)
    elif args.corpus == "libritts_r":
        libritts_r.prepare_libritts_r(**common, parts=args.parts, seed=args.seed, num_jobs=args.nj)
    elif args.corpus == "covost2":
        covost2.prepare_covost2(**common, covost_dir=args.covost_dir, num_jobs=args.nj)
    elif args.corpus == "cvss":
        cvss.prepare_cvss(**common, cv_dirs=dict(args.cv_dir), langs=args.langs, seed=args.seed,
                          num_jobs=args.nj)
    elif args.corpus == "iemocap":
        iemocap.prepare_iemocap(**common, num_jobs=args.nj)
    elif args.corpus == "libriheavy":
        libriheavy.prepare_libriheavy(**common, librilight_dir=args.librilight_dir,
                                      subset=args.subset, hours=args.hours, seed=args.seed)
    elif args.corpus == "vctk":
        vctk.prepare_vctk(**common, num_pairs=args.num_pairs, seed=args.seed, mic=args.mic,
                          num_jobs=args.nj)
    elif args.corpus == "sc":
        sc.prepare_sc(**common, sqa_annotations=args.sqa_json, tts_command=args.tts_command,
                      max_per_part=args.max_per_part, seed=args.seed, num_jobs=args.nj)


if __name__ == "__main__":
    main()
