"""Acoustic-side extraction throughput on CPU: utterances/s and real-time factor per backend
(MelVQ codec, WavTokenizer codec at the released 40 tokens/s size with random weights — speed
does not depend on the values —, resemblyzer speaker embeddings, and optionally a local HuBERT).

The same utterances (espeak-ng speech, or --data-dir mini cuts) go through every backend in one
run. RTF = processing seconds / audio seconds (lower is faster). Last line:
``wavtokenizer_vs_melvq_encode_time=<ratio>``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dualspeech.bench import register

TEXTS = ["the quick brown fox jumps over the lazy dog", "please call stella and ask her to bring these",
         "a journey of a thousand miles begins with a single step", "the children played in the park"]


def _speech(args) -> list[np.ndarray]:
    from dualspeech.audio import load_cut_audio

    if args.data_dir:
        from lhotse import CutSet

        cuts = list(CutSet.from_file(Path(args.data_dir) / "cuts" / "mini_cuts_test.jsonl.gz"))
        return [load_cut_audio(c, 24000) for c in cuts[: args.num_utts]]
    import io
    import subprocess

    import soundfile as sf

    from dualspeech.audio import resample

    out = []
    for i in range(args.num_utts):
        raw = subprocess.run(["espeak-ng", "--stdout", TEXTS[i % len(TEXTS)]], check=True,
                             capture_output=True).stdout
        wave, sr = sf.read(io.BytesIO(raw), dtype="float32")
        out.append(resample(wave, sr, 24000))
    return out


def _random_wavtokenizer(tmp: Path):
    """The released 40 tokens/s architecture with random weights, saved as a Lightning ckpt."""
    import yaml

    from dualspeech.tokenizers.codecs import build_codec
    from dualspeech.tokenizers.codecs.wavtokenizer import WavTokenizerArch, WavTokenizerModel

    a = WavTokenizerArch()
    cfg = {"model": {"init_args": {"sample_rate": a.sample_rate,
           "feature_extractor": {"init_args": {"dowmsamples": list(a.downsamples), "vq_bins": a.codebook_size,
                                               "num_quantizers": 1}},
           "backbone": {"init_args": {"input_channels": a.encoder_dim, "dim": a.dim,
                                      "intermediate_dim": a.intermediate_dim, "num_layers": a.num_layers,
                                      "adanorm_num_embeddings": a.adanorm_num_embeddings}},
           "head": {"init_args": {"dim": a.dim, "n_fft": a.n_fft, "hop_length": a.hop_length,
                                  "padding": "same"}}}}}
    (tmp / "wt.yaml").write_text(yaml.safe_dump(cfg))
    torch.save({"state_dict": WavTokenizerModel(a).state_dict()}, tmp / "wt.ckpt")
    return build_codec({"name": "wavtokenizer", "config": str(tmp / "wt.yaml"),
                        "checkpoint": str(tmp / "wt.ckpt")})


def _time(fn, items) -> float:
    t0 = time.perf_counter()
    fn(items)
    return time.perf_counter() - t0


@register("acoustic_extraction", "utterances/s and RTF of codecs / speaker / HuBERT extraction on CPU")
def run(argv: list[str]) -> None:
    from dualspeech.audio import resample
    from dualspeech.tokenizers.codecs.melvq import MelVQCodec, MelVQFeatures, MelVQTrainConfig, train_melvq
    from dualspeech.tokenizers.speaker import build_speaker_encoder

    p = argparse.ArgumentParser(prog="bench acoustic_extraction", description=__doc__)
    p.add_argument("--num-utts", type=int, default=8)
    p.add_argument("--data-dir", default=None, help="mini corpus root (default: espeak sentences)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hubert", default=None, help="local HubertModel dir to include (optional)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    w24 = _speech(args)
    w16 = [resample(w, 24000, 16000) for w in w24]
    audio_s = sum(len(w) for w in w16) / 16000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_melvq(w16, MelVQTrainConfig(features=MelVQFeatures(), codebook_size=64), tmp / "m.pt")
        melvq = MelVQCodec(tmp / "m.pt")
        ids = melvq.encode(w16)
        rows.append(("melvq encode", _time(melvq.encode, w16)))
        rows.append(("melvq decode (Griffin-Lim 32)", _time(melvq.decode, ids)))
        wt = _random_wavtokenizer(tmp)
        wt.encode(w24[:1])
        wt_ids = wt.encode(w24)
        rows.append(("wavtokenizer encode", _time(wt.encode, w24)))
        rows.append(("wavtokenizer decode", _time(wt.decode, wt_ids)))
    spk = build_speaker_encoder({"name": "resemblyzer"})
    rows.append(("resemblyzer embed", _time(spk.embed, w16)))
    if args.hubert:
        from dualspeech.tokenizers.hubert import HubertFeatures

        hub = HubertFeatures(args.hubert, layer=6)
        rows.append(("hubert features", _time(lambda ws: [hub(w) for w in ws], w16)))
    print(f"{len(w16)} utterances, {audio_s:.1f} s of audio, {args.threads} threads")
    print(f"{'backend':<32}{'seconds':>9}{'utts/s':>9}{'RTF':>8}")
    for name, sec in rows:
        print(f"{name:<32}{sec:>9.2f}{len(w16) / sec:>9.1f}{sec / audio_s:>8.3f}")
    ratio = dict(rows)["wavtokenizer encode"] / dict(rows)["melvq encode"]
    print(f"wavtokenizer_vs_melvq_encode_time={ratio:.2f}")
