"""Acoustic codecs behind one interface (see ``base.Codec``); ``build_codec(cfg["codec"])``
picks the backend: ``wavtokenizer`` (our implementation of the released WavTokenizer),
``hf`` (transformers DAC / EnCodec / Mimi / X-Codec), ``vqmel`` (offline: learned VQ over mel
frames + a published HiFi-GAN vocoder), ``melvq`` (offline k-means + Griffin-Lim) or
``unit_hifigan`` (decode-only: discrete units -> speech, fairseq CodeHiFiGAN layout).
Trainable backends register a ``CodecTrainer`` in ``CODEC_TRAINERS`` (``bin/train_codec``).
Importing the package registers every backend (heavy libraries load only when one is built)."""
from dualspeech.tokenizers.codecs.base import (CODEC_TRAINERS, CODECS, Codec, CodecTrainer, as_wave_list,
                                               build_codec, register_codec)
from dualspeech.tokenizers.codecs import hf, melvq, unit_hifigan, unitmel, vqmel, wavtokenizer  # noqa: F401,E402

__all__ = ["CODECS", "CODEC_TRAINERS", "Codec", "CodecTrainer", "as_wave_list", "build_codec",
           "register_codec"]
