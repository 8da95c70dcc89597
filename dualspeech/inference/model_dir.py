"""A self-contained model directory: everything raw-input inference needs, every part hashed.

Why: a trained DualSpeechLM is only usable on new speech with the exact USTokenizer that made
its input tokens, the codec its acoustic ids came from and the speaker encoder of its speaker
embeddings; any other one gives fluent-looking garbage. ``write_parts`` adds them to an
exported (``models.io.export_model``) or merged (``bin/merge``) dir and ``check_model_dir``
refuses a dir whose parts are missing or differ. Layout::

    config.yaml tokenizer/ extra.safetensors adapter/ | llm/   the DualSpeechLM (models/io.py)
    ustokenizer.pt   the USTokenizer final.pt (copied; it checks its own Whisper's sha256)
    codec.yaml       the codec section; local files it names are copied into codec/
    speaker.yaml     the speaker section; local files it names are copied into speaker/
    decode.yaml      the decode defaults (a ``decode`` section)
    model.json       format, the sha256 of every file above, and the identities (content
                     hashes) of what stays outside: the base LLM of a LoRA export, the codec's
                     and the speaker encoder's weights (e.g. the ones a pip package ships)
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from dualspeech.config import load_yaml, save_config
from dualspeech.utils.io import atomic_write_text, file_sha256, short_hash

log = logging.getLogger(__name__)

FORMAT = "dualspeech-model/1"
MANIFEST = "model.json"
SECTIONS = ("codec", "speaker", "decode")   # <name>.yaml, each holding one config section
COPIED = ("codec", "speaker")               # sections whose local files are copied in


class ModelDirError(ValueError):
    """A model dir that cannot be used as it is; the message names each bad part."""


def dir_digest(path: Path) -> str:
    """sha256 over the names and contents of every file under ``path`` (sorted)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def content_hash(path: Path) -> str:
    return file_sha256(path) if path.is_file() else dir_digest(path)


def llm_identity(model_dir: Path, cfg: dict) -> str | None:
    """``<spec>@<sha256>`` of the base LLM a LoRA export is applied to; None when the dir holds
    the LLM itself (merged: ``llm/`` is hashed with the other files)."""
    if (model_dir / "llm").is_dir():
        return None
    from dualspeech.pretrained import resolve

    spec = cfg["model"]["llm"]
    return f"{spec}@{content_hash(resolve(spec))}"


def _copy_files(section: dict, name: str, model_dir: Path) -> tuple[dict, dict]:
    """The section with every option that names a local file or dir copied under
    ``<model_dir>/<name>/<key>/`` and pointing there (relative); returns (section, {key: relpath})."""
    out, copied = dict(section), {}
    for key, value in section.items():
        if key == "name" or not isinstance(value, str) or not value or not Path(value).exists():
            continue
        rel = f"{name}/{key}/{Path(value).name}"   # the file name stays: identities hold it
        target = model_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(value).resolve() != target.resolve():
            if Path(value).is_dir():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(value, target)
            else:
                shutil.copyfile(value, target)
        out[key], copied[key] = rel, rel
    return out, copied


def localize(section: dict, copied: dict, model_dir: Path) -> dict:
    """A stored section with its copied files pointing into ``model_dir`` (any cwd)."""
    return {**section, **{k: str(model_dir / rel) for k, rel in copied.items()}}


def write_parts(model_dir: str | Path, *, ustokenizer: str | Path | None = None,
                codec: dict | None = None, speaker: dict | None = None,
                decode: dict | None = None, token_meta: list | None = None) -> dict:
    """Add the inference parts to an exported or merged model dir and write ``model.json``.

    Builds the codec and speaker encoder once to record their identities and sizes; they must
    fit the model (codebook size = AcousticGPT codes, embedding dim = spk_dim, USTokenizer
    codebook = speech tokens), and, given the extraction ``meta.json`` files of the training
    data (``token_meta``), be the very ones that made its tokens."""
    model_dir = Path(model_dir)
    cfg = load_yaml(model_dir / "config.yaml")
    manifest = {"format": FORMAT, "parts": {}, "identities": {}, "copied": {}}
    codec_voice = None
    sizes = _model_sizes(cfg)
    found: dict[str, str] = {}
    if ustokenizer is not None:
        target = model_dir / "ustokenizer.pt"
        if Path(ustokenizer).resolve() != target.resolve():
            shutil.copyfile(ustokenizer, target)
        from dualspeech.tokenizers.ustokenizer.checkpoint import load_tokenizer

        tok = load_tokenizer(target)
        _check_size("the USTokenizer codebook", tok.cfg.vq.codebook_size,
                    "model.speech.num_tokens", sizes["speech"])
        manifest["parts"]["ustokenizer"] = "ustokenizer.pt"
        found[cfg["model"].get("speech", {}).get("field", "ustokens")] = \
            f"ustokenizer:{short_hash(target)}"
    for name, section in (("codec", codec), ("speaker", speaker), ("decode", decode)):
        if not section:
            continue
        if name in COPIED:
            section, manifest["copied"][name] = _copy_files(section, name, model_dir)
        save_config({name: section}, model_dir, f"{name}.yaml")
        manifest["parts"][name] = f"{name}.yaml"
        if name == "codec":
            built = build_part("codec", localize(section, manifest["copied"]["codec"], model_dir))
            _check_size(f"codec {built.identity}", built.codebook_size,
                        "the model's acoustic ids", sizes["acoustic"])
            manifest["identities"]["codec"] = found[sizes["acoustic_field"]] = built.identity
            codec_voice = built.speaker_identity   # a speaker-conditioned codec's embeddings
        elif name == "speaker":
            built = build_part("speaker", localize(section, manifest["copied"]["speaker"],
                                                   model_dir))
            _check_size(f"speaker encoder {built.identity}", int(built.dim),
                        "model.acoustic_gpt.spk_dim", sizes["spk_dim"])
            manifest["identities"]["speaker"] = found["speaker_embedding"] = built.identity
    if codec_voice and found.get("speaker_embedding", codec_voice) != codec_voice:
        raise ModelDirError(f"the codec decodes with embeddings of {codec_voice} but the speaker "
                            f"section is {found['speaker_embedding']}: export with the speaker "
                            "encoder the codec was trained with")
    if token_meta:
        _check_token_sources(token_meta, found)
    llm = llm_identity(model_dir, cfg)
    if llm is not None:
        manifest["identities"]["llm"] = llm
    manifest["files"] = {str(f.relative_to(model_dir)): file_sha256(f)
                         for f in sorted(model_dir.rglob("*"))
                         if f.is_file() and f.name != MANIFEST}
    atomic_write_text(model_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    log.info("%s: model dir with %s (%d files hashed)", model_dir,
             ", ".join(manifest["parts"]) or "no inference parts", len(manifest["files"]))
    return manifest


def _model_sizes(cfg: dict) -> dict:
    model = cfg["model"]
    agpt = model.get("acoustic_gpt")
    speech = int(model.get("speech", {}).get("num_tokens", 0))
    return {"speech": speech,
            "acoustic": int(agpt["n_codes"]) if agpt else speech,
            "acoustic_field": agpt.get("field", "acoustic_tokens") if agpt else "ustokens",
            "spk_dim": int(agpt["spk_dim"]) if agpt else None}


def _check_size(what: str, size: int, model_what: str, expected) -> None:
    if expected is not None and size != expected:
        raise ModelDirError(f"{what} has {size} entries but {model_what} is {expected}: export "
                            "with the part the model was trained with")


def _check_token_sources(paths: list, found: dict[str, str]) -> None:
    """Each extraction meta.json names the extractor of a field; the exported part must be it."""
    for path in paths:
        meta = json.loads(Path(path).read_text())
        field, identity = meta.get("field"), meta.get("identity")
        if field in found and identity != found[field]:
            raise ModelDirError(f"the training data's {field} were made by {identity} "
                                f"({path}), but the exported part is {found[field]}")


def build_part(name: str, section: dict, device: str = "cpu"):
    """The codec or speaker encoder of a section (the one place both are built from a dir)."""
    if name == "codec":
        from dualspeech.tokenizers.codecs import build_codec

        return build_codec(section).to(device)
    from dualspeech.tokenizers.speaker import build_speaker_encoder

    return build_speaker_encoder(section, device=device)


def read_manifest(model_dir: str | Path) -> dict:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise ModelDirError(f"{model_dir} has no {MANIFEST}: it is not a self-contained model "
                            "dir; make one with python -m dualspeech.bin.export (docs/inference.md)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise ModelDirError(f"{path}: unreadable ({e})") from e
    if manifest.get("format") != FORMAT:
        raise ModelDirError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def check_model_dir(model_dir: str | Path, need: tuple[str, ...] = ()) -> dict:
    """``model.json`` after checking every file it lists (present, same sha256), the base LLM's
    identity and that the parts in ``need`` are there. One error names every bad part."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    problems = []
    for rel, digest in manifest["files"].items():
        f = model_dir / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
        elif file_sha256(f) != digest:
            problems.append(f"{rel}: differs from the exported file (sha256)")
    llm = manifest["identities"].get("llm")
    if llm is not None and not problems:
        try:
            now = llm_identity(model_dir, load_yaml(model_dir / "config.yaml"))
        except FileNotFoundError as e:
            now = f"not found ({e})"
        if now != llm:
            problems.append(f"base LLM: exported on {llm}, found {now}")
    for part in need:
        if part not in manifest["parts"]:
            problems.append(f"{part}: not in this model dir (export it with --{part}"
                            f"{'-conf' if part in SECTIONS else ''})")
    if problems:
        raise ModelDirError(f"{model_dir}: " + "; ".join(problems))
    return manifest


def part_section(model_dir: str | Path, manifest: dict, name: str) -> dict | None:
    """The stored config section ``name`` with its copied files pointing into the dir."""
    if name not in manifest["parts"]:
        return None
    model_dir = Path(model_dir)
    section = load_yaml(model_dir / manifest["parts"][name]).get(name) or {}
    return localize(section, manifest["copied"].get(name, {}), model_dir)


def check_identity(manifest: dict, name: str, built) -> None:
    """A codec / speaker encoder built from the dir must be the exported one (its weights)."""
    want = manifest["identities"].get(name)
    if want is not None and built.identity != want:
        raise ModelDirError(f"{name}: exported as {want}, but its weights now give "
                            f"{built.identity}: put the exported weights back or re-export")
