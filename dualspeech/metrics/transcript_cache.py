"""Transcripts of a whole set of audio files, cached by content (``score.asr_cache``).

Ground-truth speech and resynthesised codec ids do not change between runs, yet every scoring
run transcribed them again. The cache holds whole sets, not single utterances, because a
transcript depends on its batch (the length cap follows the batch's longest utterance; sampled
fallbacks draw in batch order): a set is read back only when the transcriber's settings and
every file's bytes are what they were, and otherwise transcribed whole, exactly as without the
cache. So scores never depend on what was cached before.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from dualspeech.utils.io import atomic_write_text, file_sha256

log = logging.getLogger(__name__)


def transcriber_identity(transcriber) -> dict:
    """Everything a transcript depends on besides the audio; a checkpoint file by its content."""
    spec = str(transcriber.spec)
    return {"engine": transcriber.engine, "precision": transcriber.precision, "spec": spec,
            "weights": file_sha256(spec) if Path(spec).is_file() else None,
            "batch_size": transcriber.batch_size, "language": transcriber.language,
            "max_tokens": transcriber.max_tokens, "max_tokens_per_s": transcriber.max_tokens_per_s}


def set_key(transcriber, paths: list[str]) -> str:
    h = hashlib.sha256(json.dumps(transcriber_identity(transcriber), sort_keys=True).encode())
    for p in paths:
        h.update(file_sha256(p).encode())
    return h.hexdigest()


def transcribe_files_cached(transcriber, paths: list[str], root: Path | None) -> list[str]:
    """``transcriber.transcribe_files(paths)``, read from / written to ``root`` (None: no cache)."""
    if root is None or not paths:
        return transcriber.transcribe_files(paths)
    entry = Path(root) / f"{set_key(transcriber, paths)}.json"
    if entry.is_file():
        try:
            texts = json.loads(entry.read_text())["texts"]
            if isinstance(texts, list) and len(texts) == len(paths):
                log.info("transcripts of these %d files read from the cache (%s)", len(paths), entry)
                return texts
        except (ValueError, KeyError, TypeError):
            pass
        log.warning("transcript cache entry %s is unreadable or of another set: transcribing "
                    "again and replacing it", entry)
    texts = transcriber.transcribe_files(paths)
    atomic_write_text(entry, json.dumps({"n": len(paths), "texts": texts}))
    return texts
