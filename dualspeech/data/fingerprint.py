"""A generated corpus's fingerprint: what it holds, and the versions of the synthesisers that made it.

Two runs of the same recipe can only give the same table from the same corpus, and a synthetic
corpus is only as fixed as the TTS packages on the machine (Debian voices are not pinned by pip).
The fingerprint says which corpus a table was made from, so a user whose corpus differs from the
committed one is told so (stage 0 and beside stage 8's table) instead of chasing the difference
in training. It holds

* ``audio``: sha256 over (path relative to the corpus, sha256 of the bytes) of every wav,
* ``text``: sha256 over the manifests, cuts and task examples (transcripts, translations,
  questions, labels, links), with the corpus's own absolute path removed from every string so a
  copy elsewhere has the same hash, each file's lines hashed as a set,
* ``packages``: ``{"debian": {name: version}, "pypi": {name: version}}`` (None: not installed),
* ``id``: the first 12 hex digits of the hash of audio and text, the short name tables print.

Both hashes are order-independent (files and lines are sorted by their hashes or names), so they
do not depend on the order a run wrote things in.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import logging
import shutil
import subprocess
from pathlib import Path

from dualspeech.utils.io import atomic_write_text, file_sha256

log = logging.getLogger(__name__)

FILENAME = "fingerprint.json"
TEXT_DIRS = ("manifests", "cuts", "tasks")


def _sha(parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def audio_hash(corpus_dir: Path) -> tuple[str, int]:
    """Hash of every wav under ``corpus_dir`` by relative path and content; and their count."""
    wavs = sorted(p for p in corpus_dir.rglob("*.wav") if not p.name.startswith("."))
    return _sha(f"{p.relative_to(corpus_dir).as_posix()} {file_sha256(p)}" for p in wavs), len(wavs)


def _relative(obj, prefix: str):
    if isinstance(obj, str):
        return obj[len(prefix):] if obj.startswith(prefix) else obj
    if isinstance(obj, dict):
        return {k: _relative(v, prefix) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative(v, prefix) for v in obj]
    return obj


def text_hash(corpus_dir: Path) -> str:
    """Hash of the JSONL(.gz) files of manifests/, cuts/ and tasks/, paths made relative."""
    prefix = str(corpus_dir.resolve()) + "/"
    files = []
    for sub in TEXT_DIRS:
        for path in sorted((corpus_dir / sub).glob("*.jsonl*")):
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as f:
                lines = sorted(_sha([json.dumps(_relative(json.loads(ln), prefix), sort_keys=True)])
                               for ln in f if ln.strip())
            files.append(f"{sub}/{path.name} {_sha(lines)}")
    return _sha(files)


def debian_versions(names: list[str]) -> dict[str, str | None]:
    """Installed versions from dpkg-query; None for a package that is not installed (or no dpkg)."""
    found: dict[str, str | None] = dict.fromkeys(names)
    if names and shutil.which("dpkg-query"):
        # one call; a missing package only makes dpkg-query exit 1 after printing the others
        out = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev} ${Version}\n",
                              *names], capture_output=True, text=True).stdout
        for line in out.splitlines():
            name, status, *version = line.split()
            if name in found and status.startswith("ii") and version:
                found[name] = version[0]
    return found


def pypi_versions(names: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def package_versions(packages: dict[str, list[str]]) -> dict[str, dict[str, str | None]]:
    """``{"debian": [...], "pypi": [...]}`` -> the same keys with each package's version."""
    return {"debian": debian_versions(sorted(packages.get("debian", []))),
            "pypi": pypi_versions(sorted(packages.get("pypi", [])))}


def corpus_fingerprint(corpus_dir: str | Path, packages: dict[str, list[str]]) -> dict:
    corpus_dir = Path(corpus_dir)
    audio, n_wavs = audio_hash(corpus_dir)
    text = text_hash(corpus_dir)
    return {"id": _sha([audio, text])[:12], "audio": audio, "text": text, "wavs": n_wavs,
            "packages": package_versions(packages)}


def write_fingerprint(corpus_dir: str | Path, fingerprint: dict) -> Path:
    """``corpus_dir/fingerprint.json``, rewritten only when it changes (later stages hash the
    corpus directory by file times)."""
    path = Path(corpus_dir) / FILENAME
    text = json.dumps(fingerprint, indent=2, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)
    return path


def read_fingerprint(path: str | Path) -> dict:
    """A fingerprint file (a corpus's, or a committed reference); a clear error if unusable."""
    path = Path(path)
    try:
        fp = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the corpus fingerprint {path}: {e}") from e
    missing = [k for k in ("id", "audio", "text", "packages") if k not in fp]
    if missing:
        raise ValueError(f"{path} is not a corpus fingerprint (no {', '.join(missing)}); "
                         f"expected the {FILENAME} that the corpus generator writes")
    return fp


def differences(fingerprint: dict, reference: dict) -> list[str]:
    """What differs between a corpus and a reference, one phrase each; [] when they agree."""
    out = []
    if fingerprint["audio"] != reference["audio"]:
        out.append(f"audio hash {fingerprint['audio'][:12]} (reference {reference['audio'][:12]})")
    if fingerprint["text"] != reference["text"]:
        out.append(f"text hash {fingerprint['text'][:12]} (reference {reference['text'][:12]})")
    for kind in ("debian", "pypi"):
        ours, theirs = fingerprint["packages"].get(kind, {}), reference["packages"].get(kind, {})
        for name in sorted(ours.keys() | theirs.keys()):
            if ours.get(name) != theirs.get(name):
                out.append(f"{kind} {name} {ours.get(name) or 'not installed'} "
                           f"(reference {theirs.get(name) or 'not recorded'})")
    return out


def describe(fingerprint: dict) -> str:
    """One line: the id and every package version."""
    versions = [f"{name} {v or 'not installed'}" for kind in ("debian", "pypi")
                for name, v in sorted(fingerprint["packages"].get(kind, {}).items())]
    return f"{fingerprint['id']} ({fingerprint.get('wavs', '?')} wavs; {', '.join(versions)})"


def compare_message(fingerprint: dict, reference: dict, reference_name: str) -> str | None:
    """The warning for a corpus that differs from the reference, or None when it is the same."""
    diff = differences(fingerprint, reference)
    if not diff:
        return None
    note = f" ({reference['note']})" if reference.get("note") else ""
    return (f"this corpus (fingerprint {fingerprint['id']}) differs from the reference "
            f"{reference_name} (fingerprint {reference['id']}){note}: {'; '.join(diff)}. "
            "Results made from it need not match the tables made from the reference; the "
            "package versions named are the reference's (tools/install.sh pins the PyPI ones)")
