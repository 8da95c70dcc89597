"""Acoustic-side extraction speed on CPU, measured side by side on the same utterances:
utterances per second and real-time factor (processing time / audio time; < 1 is faster than
real time) of each codec's encode (what ``extract_acoustic`` runs) and decode (what TTS decoding
runs), and of each speaker encoder (``extract_speaker``).

Backends: ``melvq`` (trained here on the same utterances unless ``--melvq-checkpoint``),
``wavtokenizer`` (the released 40 tokens/s architecture at full size with random weights:
speed does not depend on the weights, which cannot be downloaded here), ``resemblyzer``.
Utterances are espeak-ng speech (``--num-utts``) or the cuts of ``--cuts``.
Last line: ``melvq_encode_rtf=<value>``.

  python -m dualspeech.bin.bench acoustic_extraction --num-utts 8
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dualspeech.audio import resample
from dualspeech.bench import register

SENTENCES = ["the quick brown fox jumps over the lazy dog near the river bank",
             "she sells sea shells by the sea shore every sunny morning in june",
             "a journey of a thousand miles begins with a single careful step forward",
             "please call stella and ask her to bring these things with her from the store"]


def espeak_utterances(n: int, sr: int) -> list[np.ndarray]:
    import io

    import soundfile as sf

    out = []
    for i in range(n):
        raw = subprocess.run(["espeak-ng", "-v", ["en-us", "en-gb"][i % 2], "--stdout",
                              SENTENCES[i % len(SENTENCES)]], check=True, capture_output=True).stdout
        wave, file_sr = sf.read(io.BytesIO(raw), dtype="float32")
        out.append(resample(wave, file_sr, sr))
    return out


def load_utterances(args, sr: int) -> list[np.ndarray]:
    if not args.cuts:
        return espeak_utterances(args.num_utts, sr)
    from lhotse import CutSet

    from dualspeech.audio import load_cut_audio

    return [load_cut_audio(c, sr) for c in list(CutSet.from_file(args.cuts))[: args.num_utts]]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def codecs(args, tmp: Path):
    """(name, codec) pairs; each built lazily so an unavailable backend is reported, not fatal."""
    from dualspeech.tokenizers.codecs.melvq import MelVQFeatures, MelVQCodec, MelVQTrainConfig, train_melvq

    ckpt = args.melvq_checkpoint
    if not ckpt:
        waves = espeak_utterances(len(SENTENCES) * 2, 16000)
        ckpt = train_melvq(waves, MelVQTrainConfig(features=MelVQFeatures(), codebook_size=256,
                                                   kmeans_iters=20), tmp / "melvq.pt")
    yield "melvq", MelVQCodec(ckpt, griffin_lim_iters=32)
    if "wavtokenizer" in args.backends:
        from dualspeech.tokenizers.codecs.wavtokenizer import WavTokenizerArch, WavTokenizerCodec, WavTokenizerModel

        torch.manual_seed(0)
        yield "wavtokenizer (random weights)", WavTokenizerCodec(WavTokenizerModel(WavTokenizerArch()), "random")


@register("acoustic_extraction", "codec encode/decode and speaker embedding speed (utt/s, RTF) on CPU")
def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.bench acoustic_extraction", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", default=None, help="cut manifest to take utterances from (default: espeak)")
    p.add_argument("--num-utts", type=int, default=8)
    p.add_argument("--melvq-checkpoint", default=None)
    p.add_argument("--backends", nargs="+", default=["melvq", "wavtokenizer", "resemblyzer"],
                   choices=["melvq", "wavtokenizer", "resemblyzer"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, codec in codecs(args, Path(tmp)):
            if name == "melvq" and "melvq" not in args.backends:
                continue
            waves = load_utterances(args, codec.sample_rate)
            audio_s = sum(len(w) for w in waves) / codec.sample_rate
            ids = []
            t_enc = timed(lambda: ids.extend(codec.encode(waves)))
            t_dec = timed(lambda: codec.decode(ids))
            rows += [(f"{name} encode", len(waves), audio_s, t_enc), (f"{name} decode", len(waves), audio_s, t_dec)]
        if "resemblyzer" in args.backends:
            from dualspeech.tokenizers.speaker import build_speaker_encoder

            enc = build_speaker_encoder({"name": "resemblyzer"})
            waves = load_utterances(args, enc.sample_rate)
            audio_s = sum(len(w) for w in waves) / enc.sample_rate
            rows.append(("resemblyzer embed", len(waves), audio_s, timed(lambda: enc.embed(waves))))
    print(f"{'backend':<40} {'utts':>5} {'audio s':>8} {'wall s':>8} {'utt/s':>8} {'RTF':>7}")
    for name, n, audio_s, wall in rows:
        print(f"{name:<40} {n:>5} {audio_s:>8.1f} {wall:>8.2f} {n / wall:>8.2f} {wall / audio_s:>7.3f}")
    melvq = [wall / audio_s for name, _, audio_s, wall in rows if name == "melvq encode"]
    print(f"melvq_encode_rtf={melvq[0]:.4f}" if melvq else "melvq_encode_rtf=nan")
