"""Weights the project trains once and ships inside the package (``dualspeech/assets/``, each
with a model card saying what data and command made it): ``asset:<file name>``. The sha256 of
each file is recorded here; a missing, truncated or replaced file is refused by name."""
from __future__ import annotations

from pathlib import Path

from dualspeech.pretrained.cache import PretrainedNotFound
from dualspeech.utils.io import file_sha256

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets"
# file name -> (sha256, model card); egs/codec/run.sh --stage 3 prints the line of a retrained codec
ASSETS: dict[str, tuple[str, str]] = {
    "codec_unitmel.pt": ("6ac3c0cca301eb6c9e28c7e5f111a30d7d5a895421a87c799dd8383c0eb50a74",
                         "codec_unitmel.md"),
}


def resolve_asset(name: str) -> Path:
    if name not in ASSETS:
        raise PretrainedNotFound(f"asset:{name}: unknown shipped asset; known: "
                                 f"{', '.join('asset:' + n for n in sorted(ASSETS))}")
    sha, card = ASSETS[name]
    path = ASSET_DIR / name
    fix = ("reinstall the package from a complete checkout (git lfs is not used: the file is "
           f"committed), or rebuild it with egs/codec/run.sh (see {ASSET_DIR / card})")
    if not path.is_file():
        raise PretrainedNotFound(f"asset:{name}: {path} is missing; expected the shipped file "
                                 f"with sha256 {sha}; {fix}")
    got = file_sha256(path)
    if got != sha:
        raise PretrainedNotFound(f"asset:{name}: {path} has sha256 {got}, but the shipped file "
                                 f"has {sha} (truncated, replaced or retrained); {fix}")
    return path


def referenced_assets(cfg) -> list[Path]:
    """The shipped files that ``asset:`` values anywhere in a config name (checked): a stage
    that uses them must re-run when one is retrained."""
    if isinstance(cfg, dict):
        return [p for v in cfg.values() for p in referenced_assets(v)]
    if isinstance(cfg, list):
        return [p for v in cfg for p in referenced_assets(v)]
    if isinstance(cfg, str) and cfg.startswith("asset:"):
        return [resolve_asset(cfg[len("asset:"):])]
    return []
