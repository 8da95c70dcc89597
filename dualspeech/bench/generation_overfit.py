"""Can the speech-generation path learn at all? Overfit TTS + VC on a handful of utterances.

A learnability proof for the generation half of DualSpeechLM: the real stage code of the recipe
(corpus synthesis, USTokenizer training + extraction, codec training + extraction, speaker
embeddings, task checks, shards, ``bin.train``, ``bin.decode`` with its batching, KV cache,
sampling and bans, the project's scorer) runs on N sentences spoken by two seen voices. The
LLM + AcousticGPT are trained on TTS and VC of exactly those utterances until the losses
plateau and then asked to regenerate them. A path without faults in its token layout, condition
masks / positions, end-of-audio handling or decoding must then regenerate speech about as
intelligible as its codec's resynthesis of the ground-truth codes:

    overfit_wer_ratio = WER(regenerated) / WER(resynthesised ground-truth codes)

Printed per utterance and in total: WER of the regenerated, resynthesised and original speech,
the end-of-audio rate, generated / reference length, and SIM to the prompt vs another speaker.
The paper's key ablation at this scale is the same run with ``--set
model.loss_weights.semantic=0``.

Each stage runs as the recipe runs it, ``python -m dualspeech.bin.<stage>`` in its own process
(the bench layer does not import ``bin``). Every stage's output lives under ``--work-dir`` in a
directory named by the hash of everything it was made from, so a second run (e.g. the
ablation) reuses the corpus, tokenizers and codec, and a changed argument never reuses a stale
output.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dualspeech.bench import register
from dualspeech.utils.stamp import params_digest

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "egs" / "mini" / "conf"
CORPUS = "ovf"
PART = "train"
SOURCE = f"{CORPUS}:{PART}"
VOICES = ("spk01", "spk04")  # two seen mini voices: festival slt (f), flite rms (m)


def _digest(*parts) -> str:
    """A step's key: the project's parameter hash over everything it is made from."""
    return params_digest({"inputs": parts})


class Cli:
    """Runs ``python -m dualspeech.bin.<name> ARGS`` with this checkout first on the path and
    ``--threads`` as the children's OMP_NUM_THREADS; a failure names the command (its log is
    above it)."""

    def __init__(self, threads: int = 0):
        path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        if threads:
            self.env["OMP_NUM_THREADS"] = str(threads)

    def __call__(self, name: str, args: list[str]) -> None:
        cmd = [sys.executable, "-m", f"dualspeech.bin.{name}", *args]
        proc = subprocess.run(cmd, env=self.env)
        if proc.returncode != 0:
            raise RuntimeError(f"stage {name} failed (exit {proc.returncode}; its log is above): "
                               + " ".join(cmd))


def _sets(sets: list[str]) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


class Steps:
    """Each step's outputs in ``<work>/<name>-<hash of its inputs>``, made once (``.done``)."""

    def __init__(self, work: Path):
        self.work = work
        self.seconds: dict[str, float] = {}

    def run(self, name: str, key: str, fn) -> Path:
        out = self.work / f"{name}-{key}"
        if (out / ".done").is_file():
            log.info("%s: reusing %s", name, out)
            self.seconds[name] = 0.0
            return out
        shutil.rmtree(out, ignore_errors=True)   # a half-made step from a killed run
        out.mkdir(parents=True)
        t0 = time.perf_counter()
        fn(out)
        self.seconds[name] = time.perf_counter() - t0
        (out / ".done").write_text("")
        return out


def make_corpus(out: Path, n_sentences: int, seed: int) -> None:
    """N sentences x two voices; TTS and VC examples whose targets are those utterances; ASR
    examples of them train the USTokenizer. Prompts are another utterance of the target voice."""
    from lhotse import Recording

    from dualspeech.data.manifest_io import PartData, speech_cut, task_example, write_part
    from dualspeech.data.mini import SAMPLE_RATE, SPEAKERS
    from dualspeech.data.mini_grammar import sample_sentences
    from dualspeech.data.synth import EngineSet, SynthJob, synthesize_all

    if n_sentences < 2:
        raise SystemExit("--num-sentences must be >= 2 (a prompt is another sentence of the voice)")
    texts = [s.text("en") for s in sample_sentences(n_sentences, random.Random(seed))]
    voices = {spk: SPEAKERS[spk][0] for spk in VOICES}
    utt = {(i, spk): f"{CORPUS}_{i:03d}_{spk}" for i in range(n_sentences) for spk in VOICES}
    audio = out / "audio"
    jobs = [SynthJob(str(audio / f"{uid}.wav"), texts[i], voices[spk]) for (i, spk), uid in utt.items()]
    synthesize_all(EngineSet(list(voices.values()), SAMPLE_RATE), jobs, desc="overfit corpus")
    data, cuts = PartData(), {}
    for (i, spk), uid in utt.items():
        rec = Recording.from_file(audio / f"{uid}.wav", recording_id=uid)
        cuts[uid] = speech_cut(rec, texts[i], spk, gender=SPEAKERS[spk][1])
        data.add_cut(cuts[uid])
    for (i, spk), uid in utt.items():
        other_voice = next(v for v in VOICES if v != spk)
        prompt = utt[((i + 1) % n_sentences, spk)]
        data.add_example(task_example(cuts[uid], "asr", text=texts[i]))
        data.add_example(task_example(cuts[uid], "tts", {"speaker_ref": prompt}, text=texts[i]))
        data.add_example(task_example(cuts[utt[(i, other_voice)]], "vc",
                                      {"target": uid, "speaker_ref": prompt}, text=texts[i]))
    write_part(out, CORPUS, PART, data)


def _cuts(d: Path) -> Path:
    return d / f"{CORPUS}_cuts_{PART}.jsonl.gz"


def train_ustokenizer(cli: Cli, out: Path, corpus: Path, conf: Path, sets: list[str]) -> None:
    cli("train_ustokenizer", ["--conf", str(conf), "--exp-dir", str(out), "--data-dir", str(corpus),
                              "--train-sets", SOURCE, *_sets(sets)])


def extract(cli: Cli, out: Path, corpus: Path, ust: Path, codec: Path, speaker_conf: Path) -> None:
    steps = [("extract_ustokens", _cuts(corpus / "cuts"), "ustokens",
              ["--checkpoint", str(ust / "final.pt")]),
             ("extract_acoustic", None, "acoustic", ["--conf", str(codec / "codec.yaml")]),
             ("extract_speaker", None, "cuts", ["--conf", str(speaker_conf)])]
    prev = None
    for stage, src, name, extra in steps:
        src = src or prev
        prev = _cuts(out / name)
        cli(stage, ["--cuts", str(src), "--out-cuts", str(prev), "--storage-dir",
                    str(out / "arrays" / name), *extra])
    meta = [str(p) for p in sorted((out / "arrays").glob("*/meta.json"))]
    (out / "token_meta.json").write_text(json.dumps(meta))


def task_data(cli: Cli, out: Path, corpus: Path, tokens: Path, lm_conf: Path,
              sets: list[str]) -> None:
    """Stage 5: the checked examples next to the token cuts, and the training shards."""
    (out / "cuts").mkdir()
    shutil.copy(_cuts(tokens / "cuts"), _cuts(out / "cuts"))
    cli("check_task_data", ["--sets", SOURCE, "--tasks-dir", str(corpus / "tasks"),
                            "--cuts-dir", str(out / "cuts"), "--out-dir", str(out / "tasks"),
                            "--require-tokens"])
    cli("write_shards", ["--conf", str(lm_conf), "--data-root", str(out), "--sets", SOURCE,
                         "--token-meta", *json.loads((tokens / "token_meta.json").read_text()),
                         *_sets(sets)])


def train_lm(cli: Cli, out: Path, data: Path, tokens: Path, ust: Path, lm_conf: Path,
             sets: list[str]) -> None:
    from dualspeech.config import load_config

    args = ["--conf", str(lm_conf), "--exp-dir", str(out / "exp"), "--data-root", str(data),
            "--train", SOURCE, "--valid", SOURCE,
            "--token-meta", *json.loads((tokens / "token_meta.json").read_text())]
    if load_config(lm_conf, sets)["model"].get("speech_init", {}).get("method") == "ustokenizer":
        args += ["--set", f"model.speech_init.ustokenizer_ckpt={ust / 'final.pt'}"]
    cli("train", args + _sets(sets))


def decode(cli: Cli, out: Path, data: Path, model: Path, codec: Path, decode_conf: Path,
           sets: list[str]) -> None:
    for control in (None, "resynth", "ground_truth"):
        cli("decode", ["--conf", str(decode_conf), "--model", str(model), "--data-root", str(data),
                       "--sources", SOURCE, "--tasks", "tts", "vc",
                       "--out-dir", str(out / (control or "model")),
                       "--codec-conf", str(codec / "codec.yaml"), "--set", "decode.max_examples=null",
                       *_sets(sets + ([f"+decode.control={control}"] if control else []))])


def _test_dir(root: Path, task: str) -> Path:
    dirs = [d for d in root.iterdir() if d.is_dir() and d.name.endswith(f"_{task}_{PART}")]
    if len(dirs) != 1:
        raise RuntimeError(f"expected one decoded {task} set in {root}, found {[d.name for d in dirs]}")
    return dirs[0]


def score(decoded: Path, whisper: str) -> dict:
    """Per task and version (model / resynth / ground_truth): the scorer's per-utterance rows,
    plus the hypothesis records (status, lengths)."""
    from dualspeech.metrics.scoring import Resources, ScoreConfig, read_hyps, score_records

    cfg = ScoreConfig(asr_model=whisper, dnsmos=False, n_bootstrap=200)
    res = Resources(cfg)
    out: dict = {}
    for task in ("tts", "vc"):
        for version in ("model", "resynth", "ground_truth"):
            test_dir = _test_dir(decoded / version, task)
            records = read_hyps(test_dir / "hyp.jsonl")
            scored = score_records(records, test_dir, cfg, res)
            out[(task, version)] = {"records": {r["id"]: r for r in records},
                                    "rows": {r["id"]: r for r in scored["per_utt"]},
                                    "metrics": scored["metrics"], "controls": scored["controls"]}
    return out


def _value(scored: dict, metric: str) -> float:
    est = scored["metrics"].get(metric)
    return float("nan") if est is None else est["value"]


def _utt_wer(row: dict) -> float:
    """One utterance's WER (%) from the scorer's per-utterance edit counts."""
    if not row.get("wer_ref_len"):
        return float("nan")
    return 100.0 * row["wer_errors"] / row["wer_ref_len"]


def report(scores: dict, seconds: dict, backbone: str) -> tuple[float, int, int]:
    """Per-utterance and total tables; returns (ratio, ended, n) over TTS + VC."""
    nan = float("nan")
    totals = {}
    for task in ("tts", "vc"):
        model, resynth, truth = (scores[(task, v)] for v in ("model", "resynth", "ground_truth"))
        print(f"\n{task.upper()}  {'id':<22}{'status':<18}{'WER gen':>8}{'resyn':>7}{'orig':>7}"
              f"{'len g/r':>9}{'SIM':>7}")
        for uid, rec in model["records"].items():
            row = model["rows"][uid]
            print(f"      {uid:<22}{rec['status']:<18}{_utt_wer(row):>8.1f}"
                  f"{_utt_wer(resynth['rows'][uid]):>7.1f}{_utt_wer(truth['rows'][uid]):>7.1f}"
                  f"{row.get('length_ratio', nan):>9.2f}{row.get('sim', nan):>7.3f}")
        other = model["controls"].get("sim", {}).get("other_speaker", {}).get("value", nan)
        n = len(model["records"])
        ended = sum(r["status"] == "ok" for r in model["records"].values())
        wers = [_value(s, "wer") for s in (model, resynth, truth)]
        print(f"      total: WER regenerated {wers[0]:.1f} %, resynthesised {wers[1]:.1f} %, "
              f"original {wers[2]:.1f} %; ended with end-of-audio {ended}/{n}; length gen/ref "
              f"{_value(model, 'length_ratio'):.2f}; SIM {_value(model, 'sim'):.3f} vs other "
              f"speaker {other:.3f} (resynthesised {_value(resynth, 'sim'):.3f})")
        totals[task] = (wers[0], wers[1], ended, n)
    gen = np.mean([t[0] for t in totals.values()])
    ref = np.mean([t[1] for t in totals.values()])
    ended, n = sum(t[2] for t in totals.values()), sum(t[3] for t in totals.values())
    print(f"\nbackbone {backbone}; seconds per step: "
          + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    print(f"TTS + VC: WER regenerated {gen:.1f} % vs resynthesised {ref:.1f} %; "
          f"ended with end-of-audio {ended}/{n}")
    return gen / max(ref, 1e-9), ended, n


@register("generation_overfit", "overfit TTS + VC on a few utterances: regenerated vs resynthesised WER")
def run(argv: list[str]) -> None:
    import torch

    from dualspeech.config import load_config

    p = argparse.ArgumentParser(prog="bench generation_overfit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-sentences", type=int, default=8,
                   help="sentences, each spoken by both voices (2N utterances, 2N TTS + 2N VC examples)")
    p.add_argument("--seed", type=int, default=0, help="sentence draw")
    p.add_argument("--lm-conf", default=str(CONF / "dualspeechlm_overfit.yaml"))
    p.add_argument("--set", dest="lm_sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override the LM config, e.g. --set model.loss_weights.semantic=0")
    p.add_argument("--ustokenizer-conf", default=str(CONF / "ustokenizer_mini.yaml"))
    p.add_argument("--ustokenizer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="added to the bench's own USTokenizer overrides (recon + commitment only, "
                        "short training: the LLM of the understanding loss is not what is tested)")
    p.add_argument("--codec-conf", default=str(CONF / "codec_vqmel.yaml"))
    p.add_argument("--codec-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--decode-conf", default=str(CONF / "decode_mini.yaml"))
    p.add_argument("--decode-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--speaker-conf", default=str(CONF / "speaker_resemblyzer.yaml"))
    p.add_argument("--whisper", default="whisper:tiny.en", help="scorer of all three versions")
    p.add_argument("--work-dir", default=None,
                   help="keep stage outputs here and reuse them (default: a temporary dir)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads of the bench and of every stage (0: torch's default)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    ust_sets = ["loss.use_under=false", "trainer.max_steps=150", "trainer.warmup_steps=10",
                "trainer.save_every=150", "data.tasks=[asr]", *args.ustokenizer_set]
    codec_sets = ["vqmel_train.steps=600", *args.codec_set]
    files = {k: Path(v).resolve() for k, v in (("lm", args.lm_conf), ("ust", args.ustokenizer_conf),
                                                 ("codec", args.codec_conf), ("dec", args.decode_conf),
                                                 ("spk", args.speaker_conf))}
    content = {k: v.read_text() for k, v in files.items()}
    backbone = load_config(files["lm"], args.lm_sets)["model"]["llm"]

    tmp = None
    if args.work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="generation_overfit-")
    work = Path(args.work_dir or tmp.name).resolve()
    steps, cli = Steps(work), Cli(args.threads)
    t0 = time.perf_counter()
    try:
        k_corpus = _digest(args.num_sentences, args.seed, VOICES)
        corpus = steps.run("corpus", k_corpus, lambda o: make_corpus(o, args.num_sentences, args.seed))
        k_ust = _digest(k_corpus, content["ust"], ust_sets)
        ust = steps.run("ustokenizer", k_ust,
                        lambda o: train_ustokenizer(cli, o, corpus, files["ust"], ust_sets))
        k_codec = _digest(k_corpus, content["codec"], codec_sets)
        codec = steps.run("codec", k_codec, lambda o: _train_codec(cli, o, corpus, files["codec"], codec_sets))
        k_tok = _digest(k_ust, k_codec, content["spk"])
        tokens = steps.run("tokens", k_tok, lambda o: extract(cli, o, corpus, ust, codec, files["spk"]))
        k_data = _digest(k_tok, content["lm"], args.lm_sets)
        data = steps.run("task_data", k_data,
                         lambda o: task_data(cli, o, corpus, tokens, files["lm"], args.lm_sets))
        k_lm = _digest(k_data)
        lm = steps.run("train", k_lm, lambda o: train_lm(cli, o, data, tokens, ust, files["lm"], args.lm_sets))
        k_dec = _digest(k_lm, content["dec"], args.decode_set)
        decoded = steps.run("decode", k_dec, lambda o: decode(cli, o, data, lm / "exp" / "model", codec,
                                                               files["dec"], args.decode_set))
        t_score = time.perf_counter()
        scores = score(decoded, args.whisper)
        steps.seconds["score"] = time.perf_counter() - t_score
        steps.seconds["total"] = time.perf_counter() - t0
        ratio, _, _ = report(scores, steps.seconds, backbone)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"overfit_wer_ratio={ratio:.3f}")


def _train_codec(cli: Cli, out: Path, corpus: Path, conf: Path, sets: list[str]) -> None:
    cli("train_codec", ["--conf", str(conf), "--cuts", str(_cuts(corpus / "cuts")),
                        "--out-dir", str(out), *_sets(sets)])
