"""MelVQ resynthesis quality: Whisper WER of original vs MelVQ-resynthesised mini-corpus speech.

Trains (or loads) a MelVQ codebook on the training cuts, encodes + decodes held-out English
cuts, transcribes both versions with the same Whisper model and reports corpus WER (%) against
the reference transcripts. Last line: ``resynth_wer=<WER of the resynthesised speech>``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dualspeech.bench import register


def _english_cuts(path: Path, limit: int) -> list:
    from lhotse import CutSet

    out = []
    for cut in CutSet.from_file(path):
        sup = cut.supervisions[0] if cut.supervisions else None
        if sup is not None and sup.text and (sup.language or "English").lower().startswith("en"):
            out.append(cut)
        if len(out) >= limit:
            break
    return out


@register("melvq_resynthesis", "Whisper WER of MelVQ-resynthesised vs original mini speech")
def run(argv: list[str]) -> None:
    from dualspeech.audio import resample
    from dualspeech.metrics.text import edit_counts
    from dualspeech.metrics.transcribe import WhisperTranscriber
    from dualspeech.tokenizers.codecs.melvq import (MelVQCodec, MelVQFeatures, MelVQTrainConfig,
                                                    train_melvq)
    from dualspeech.tokenizers.extraction import cut_waves

    p = argparse.ArgumentParser(prog="bench melvq_resynthesis", description=__doc__)
    p.add_argument("--data-dir", default="egs/mini/db/mini_default",
                   help="mini corpus root with cuts/mini_cuts_<part>.jsonl.gz (make_mini_corpus)")
    p.add_argument("--checkpoint", default=None, help="use this MelVQ checkpoint instead of training")
    p.add_argument("--codebook-size", type=int, default=1024)
    p.add_argument("--n-mels", type=int, default=80)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--train-utts", type=int, default=2000)
    p.add_argument("--eval-part", default="test")
    p.add_argument("--num-eval", type=int, default=40)
    p.add_argument("--griffin-lim-iters", type=int, default=32)
    p.add_argument("--whisper", default="whisper:tiny.en")
    args = p.parse_args(argv)
    cuts_dir = Path(args.data_dir) / "cuts"
    if not cuts_dir.is_dir():
        raise SystemExit(f"{cuts_dir} not found: generate the corpus with `python -m "
                         "dualspeech.bin.make_mini_corpus --out-dir DIR` and pass --data-dir DIR")
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint
        t0 = time.perf_counter()
        if ckpt is None:
            train = cut_waves(_english_cuts(cuts_dir / "mini_cuts_train.jsonl.gz", args.train_utts),
                              args.sample_rate, 1, skipped)
            cfg = MelVQTrainConfig(features=MelVQFeatures(sample_rate=args.sample_rate,
                                                          n_mels=args.n_mels),
                                   codebook_size=args.codebook_size, max_utterances=args.train_utts)
            ckpt = train_melvq([w for _, w in train], cfg, Path(tmp) / "melvq.pt")
        train_s = time.perf_counter() - t0
        codec = MelVQCodec(ckpt, griffin_lim_iters=args.griffin_lim_iters)
        evals = cut_waves(_english_cuts(cuts_dir / f"mini_cuts_{args.eval_part}.jsonl.gz", args.num_eval),
                          codec.sample_rate, 1, skipped)
        t0 = time.perf_counter()
        resynth = codec.decode(codec.encode([w for _, w in evals]))
        codec_s = time.perf_counter() - t0
    refs = [c.supervisions[0].text for c, _ in evals]
    originals = [resample(w, codec.sample_rate, 16000) for _, w in evals]
    resynth = [resample(w, codec.sample_rate, 16000) for w in resynth]
    asr = WhisperTranscriber(args.whisper)
    wer_orig = edit_counts(refs, asr.transcribe_waves(originals)).rate
    wer_resynth = edit_counts(refs, asr.transcribe_waves(resynth)).rate
    audio_s = sum(len(w) for w in originals) / 16000
    print(f"codec {codec.identity}: {codec.codebook_size} codes, {codec.frame_rate:g} frames/s, "
          f"{codec.sample_rate} Hz; train {train_s:.1f} s; encode+decode {codec_s:.1f} s for "
          f"{audio_s:.0f} s of audio; {len(evals)} eval utterances ({args.eval_part}), "
          f"{len(skipped)} skipped")
    print(f"{'speech':<16}{'WER %':>8}")
    print(f"{'original':<16}{wer_orig:>8.2f}")
    print(f"{'melvq resynth':<16}{wer_resynth:>8.2f}")
    print(f"resynth_wer={wer_resynth:.2f}")
