"""A recipe dir around the real egs/TEMPLATE/pipeline.sh whose `--python` is a fake script:
tests of the pipeline's own logic (stage skipping, directory names, which commands it runs)
without running the package. The one call that runs for real is the config reader the
pipeline asks (`-m dualspeech.bin.resolve_config`: includes, values, control names)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fake_corpora import (fake_cvss, fake_iemocap, fake_libriheavy, fake_librispeech, fake_libritts_r,
                          fake_vctk, sqa_json)

REPO = Path(__file__).resolve().parents[1]
CONFIG_READER = f'[ "$2" != dualspeech.bin.resolve_config ] || PYTHONPATH={REPO} exec {sys.executable} "$@"\n'


def make_fake_recipe(root: Path, fake_python: str) -> Path:
    """Links the pipeline, writes tiny configs and dump/ inputs, installs ``fakepy`` (the fake
    script with :data:`CONFIG_READER` after its first line)."""
    for name in ("pipeline.sh", "cmd.sh"):
        (root / name).symlink_to(REPO / "egs/TEMPLATE" / name)
    (root / "utils").symlink_to(REPO / "utils")
    (root / "conf").mkdir()
    (root / "conf/train.yaml").write_text("trainer:\n  max_steps: 10\n")
    (root / "conf/decode.yaml").write_text("decode:\n  max_examples: 2\n")
    (root / "conf/score.yaml").write_text("score:\n  n_bootstrap: 10\n")
    for d in ("tasks", "cuts"):
        (root / "dump" / d).mkdir(parents=True)
        (root / "dump" / d / "x.jsonl.gz").write_text(d)
    fake = root / "fakepy"
    shebang, body = fake_python.split("\n", 1)
    fake.write_text(f"{shebang}\n{CONFIG_READER}{body}")
    fake.chmod(0o755)
    return root


def run_pipeline(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    """pipeline.sh with the fake python, one train and one test part, the tiny configs."""
    return subprocess.run(
        ["./pipeline.sh", "--python", str(recipe / "fakepy"), "--corpus", "x", "--nj", "1",
         "--train-parts", "train", "--test-parts", "test", "--train-config", "conf/train.yaml",
         "--decode-config", "conf/decode.yaml", *args],
        cwd=recipe, capture_output=True, text=True, timeout=120)


def link_recipe(root: Path, name: str) -> Path:
    """egs/<name> under ``root`` with every shipped file linked to the repository's."""
    src = REPO / "egs" / name
    dst = root / "egs" / name
    dst.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.name not in ("data", "dump", "exp", "db"):
            (dst / entry.name).symlink_to(entry.resolve())
    return dst


def fake_librispeech_recipe(root: Path) -> dict:
    return {"LIBRISPEECH": fake_librispeech(root), "LIBRISPEECH_SQA": sqa_json(root)}


def fake_all(root: Path) -> dict:
    return {**fake_librispeech_recipe(root / "ls"), **fake_libritts_r(root / "tts"),
            **fake_cvss(root / "cv"), **fake_iemocap(root / "iemocap"),
            **fake_libriheavy(root / "heavy"), **fake_vctk(root / "vctk")}


# recipe -> (builder, extra options, {manifest: at least this many examples})
RECIPES = {
    "librispeech": (fake_librispeech_recipe,
                    ["--train-parts", "train-clean-100", "--dev-parts", "", "--test-parts", "test-clean"],
                    {"librispeech_asr_train-clean-100": 3, "librispeech_sqa_test-clean": 2}),
    "libritts_r": (fake_libritts_r, ["--train-parts", "train-clean-100"], {"libritts_r_tts_train-clean-100": 3,
                                         "libritts_r_tts_test-other": 3}),
    "cvss": (fake_cvss, [], {"covost2_s2tt_train": 2, "covost2_s2tt_test": 2,
                             "cvss_c_t2st_train_es": 2, "cvss_c_t2st_test_fr": 2}),
    "iemocap": (fake_iemocap, [], {"iemocap_ser_train": 16, "iemocap_ser_test": 4}),
    "libriheavy": (fake_libriheavy, [], {"libriheavy_vc_train": 6}),
    "vctk": (fake_vctk, [], {"vctk_vc_test": 2}),
    "multitask": (fake_all, [
        "--train-parts", "librispeech:train-clean-100 libritts_r:train-clean-100 covost2:train "
                         "cvss_c:train_es cvss_c:train_fr iemocap:train libriheavy:train",
        "--dev-parts", "", "--test-parts", "librispeech:test-clean sc:test-clean "
                                           "libritts_r:test-clean cvss_c:test_fr vctk:test"],
        {"librispeech_asr_train-clean-100": 3, "sc_sc_test-clean": 1, "libritts_r_tts_test-clean": 3,
         "covost2_s2tt_train": 2, "cvss_c_t2st_test_fr": 2, "iemocap_ser_train": 16,
         "libriheavy_vc_train": 6, "vctk_vc_test": 2}),
}


def linked(root: Path, name: str) -> Path:
    """A scratch copy of the recipe; multitask also needs the corpus recipes it reuses."""
    if name == "multitask":
        for other in set(RECIPES) - {name}:
            link_recipe(root, other)
    return link_recipe(root, name)


def run_recipe(recipe: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {
        "LIBRISPEECH", "LIBRISPEECH_SQA", "LIBRITTS_R", "CVSS_C", "COVOST2", "COMMONVOICE_EN",
        "COMMONVOICE_ES", "COMMONVOICE_FR", "IEMOCAP", "LIBRIHEAVY", "LIBRILIGHT", "VCTK"}}
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True,
                          env={**clean, **{k: str(v) for k, v in env.items()}}, timeout=300)
