"""Acoustic codecs behind one interface (see ``base.Codec``); ``build_codec(cfg["codec"])``
picks the backend: ``wavtokenizer`` (our implementation of the released WavTokenizer),
``hf`` (transformers DAC / EnCodec / Mimi / X-Codec) or ``melvq`` (offline k-means + Griffin-Lim).
Importing the package registers every backend (heavy libraries load only when one is built)."""
from dualspeech.tokenizers.codecs.base import CODECS, Codec, as_wave_list, build_codec, register_codec
from dualspeech.tokenizers.codecs import hf, melvq, wavtokenizer  # noqa: F401,E402  (registration)

__all__ = ["CODECS", "Codec", "as_wave_list", "build_codec", "register_codec"]
