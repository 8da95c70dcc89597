"""Add speaker embeddings to a cut manifest: ``speaker_embedding`` (Array, float32),
``speaker_embedding_source`` = the encoder identity.

    python -m dualspeech.bin.extract_speaker --conf egs/mini/conf/speaker_resemblyzer.yaml \
        --cuts dump/acoustic/mini_cuts_train.jsonl.gz --out-cuts dump/cuts/mini_cuts_train.jsonl.gz \
        --storage-dir dump/speaker/mini.train --nj 4 --job 0

The ``speaker`` section names the encoder (dualspeech.tokenizers.speaker: ``resemblyzer``, the
offline GE2E weights that the resemblyzer wheel ships; ``wavlm_sv``, a local WavLMForXVector dir;
``onnx``, a 3D-Speaker ONNX file). Sharded and resumable like the other extractors
(dualspeech.tokenizers.extraction).
"""
from __future__ import annotations

import argparse

import numpy as np

from dualspeech.config import load_yaml
from dualspeech.utils.logs import setup_logging
from dualspeech.utils.procs import die_with_job_launcher


def main(argv: list[str] | None = None):
    die_with_job_launcher()     # a killed recipe leaves no extraction job writing
    from dualspeech.tokenizers.extraction import (add_extraction_args, resolve_device, run_extraction,
                                                  wave_batches)

    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.extract_speaker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", required=True, help="YAML with a speaker section")
    add_extraction_args(p)
    args = p.parse_args(argv)
    setup_logging()
    from dualspeech.tokenizers.speaker import build_speaker_encoder

    section = load_yaml(args.conf).get("speaker")
    encoder = build_speaker_encoder(section, device=resolve_device(args.device))
    settings = dict(section, sample_rate=encoder.sample_rate, dim=int(encoder.dim))

    def extract(cuts, skipped):
        for batch, waves in wave_batches(cuts, args.batch_size, encoder.sample_rate,
                                         encoder.sample_rate // 10, skipped):
            yield from zip(batch, encoder.embed(waves))

    return run_extraction(args, "speaker_embedding", encoder.identity, settings, extract,
                          frame_shift=None, dtype=np.float32)


if __name__ == "__main__":
    main()
