"""USToken extraction speed, measured side by side in one run on the same cuts:

* ``loop, 30 s padded, extractor reloaded per call``: the reference code's way (a new
  ``transformers.WhisperFeatureExtractor`` and a 30 s padded window for every utterance);
* ``loop, 30 s padded``: one utterance at a time, nothing reloaded;
* ``loop, trimmed``: one utterance at a time, only its real frames;
* ``batched, 30 s padded`` and ``batched, trimmed``: what ``extract_ustokens`` does
  (duration-sorted batches).

Audio is loaded once up front; the timings cover features + Whisper + encoder + VQ. Without
``--checkpoint`` a fresh tokenizer around ``--whisper`` is used (weights do not change speed).
Last line: ``speedup_batched_vs_padded_loop=<batched trimmed vs loop 30 s padded>``.

  python -m dualspeech.bin.bench ustoken_extraction --cuts egs/mini/data/default/cuts/mini_cuts_dev.jsonl.gz
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from lhotse import CutSet

from dualspeech.bench import register
from dualspeech.tokenizers.extraction import cut_waves
from dualspeech.tokenizers.ustokenizer.extract import duration_batches
from dualspeech.tokenizers.ustokenizer.frontend import MIN_SAMPLES, SAMPLE_RATE, num_frames

DEFAULT_CUTS = "egs/mini/data/default/cuts/mini_cuts_dev.jsonl.gz"


def build_tokenizer(args):
    if args.checkpoint:
        from dualspeech.tokenizers.ustokenizer.checkpoint import load_tokenizer

        return load_tokenizer(args.checkpoint, args.device)
    from dualspeech.pretrained import load_whisper
    from dualspeech.tokenizers.ustokenizer.config import USTokenizerConfig, VQConfig
    from dualspeech.tokenizers.ustokenizer.model import USTokenizer

    whisper = load_whisper(args.whisper)
    width = whisper.dims.n_audio_state
    cfg = USTokenizerConfig(whisper=args.whisper, vq=VQConfig(codebook_size=1024, dim=width))
    tok = USTokenizer(cfg, whisper)
    tok.vq.initialized.fill_(True)
    return tok.eval().to(args.device)


def reference_loop(tok, waves) -> None:
    """Per utterance: new HF feature extractor, 30 s padded features, full encoder, trim."""
    from transformers import WhisperFeatureExtractor

    device = next(tok.encoder.parameters()).device
    for w in waves:
        fe = WhisperFeatureExtractor(feature_size=tok.frontend.n_mels)
        mel = fe(w.numpy(), sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        feats = tok.frontend.encoder(mel.to(device))[:, : num_frames(len(w))]
        h, n25 = tok.encoder(feats, torch.tensor([feats.shape[1]], device=device))
        tok.vq.codes(h[0])


def timed(fn) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        fn()
    return time.perf_counter() - start


@register("ustoken_extraction", "USToken extraction: batched/trimmed vs per-utterance 30 s padded loops")
def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.bench ustoken_extraction",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", default=DEFAULT_CUTS, help="cut manifest (the mini corpus dev cuts)")
    p.add_argument("--checkpoint", help="a trained tokenizer (final.pt); default: fresh weights")
    p.add_argument("--whisper", default="whisper:tiny.en", help="Whisper spec without --checkpoint")
    p.add_argument("--limit", type=int, default=40, help="number of cuts")
    p.add_argument("--max-duration", type=float, default=300.0, help="batch size in seconds")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if not Path(args.cuts).is_file():
        raise SystemExit(f"cut manifest {args.cuts} not found; make the mini corpus first "
                         "(python -m dualspeech.bin.make_mini_corpus --out-dir DIR) and pass "
                         "--cuts DIR/cuts/mini_cuts_dev.jsonl.gz")
    cuts = list(CutSet.from_file(args.cuts))[: args.limit]
    loaded = [(c, torch.from_numpy(w)) for c, w in cut_waves(cuts, SAMPLE_RATE, MIN_SAMPLES, {})]
    if not loaded:
        raise SystemExit(f"no usable audio in {args.cuts}")
    tok = build_tokenizer(args)
    waves = [w.to(args.device) for _, w in loaded]
    wave_of = {c.id: w for (c, _), w in zip(loaded, waves)}
    audio_s = sum(len(w) for w in waves) / SAMPLE_RATE

    def loop():
        for w in waves:
            tok.tokenize([w])

    def batched():
        for batch in duration_batches([c for c, _ in loaded], args.max_duration, 64,
                                      tok.frontend.pad_to_30s):
            tok.tokenize([wave_of[c.id] for c in batch])

    results = []
    tok.tokenize(waves[:1])  # warm-up
    for name, pad, fn in [("loop, 30 s padded, extractor reloaded per call", True,
                           lambda: reference_loop(tok, [w.cpu() for w in waves])),
                          ("loop, 30 s padded", True, loop), ("loop, trimmed", False, loop),
                          ("batched, 30 s padded", True, batched), ("batched, trimmed", False, batched)]:
        tok.frontend.pad_to_30s = pad
        results.append((name, timed(fn)))
    base = results[1][1]
    print(f"{len(waves)} utterances, {audio_s:.1f} s of audio, device {args.device}, "
          f"threads {torch.get_num_threads()}, whisper width {tok.frontend.width}")
    print(f"{'mode':50s} {'seconds':>8s} {'utt/s':>8s} {'vs padded loop':>15s}")
    for name, sec in results:
        print(f"{name:50s} {sec:8.2f} {len(waves) / sec:8.1f} {base / sec:14.1f}x")
    print(f"speedup_batched_vs_padded_loop={base / results[-1][1]:.2f}")
