"""A recipe dir around the real egs/TEMPLATE/pipeline.sh whose `--python` is a fake script:
tests of the pipeline's own logic (stage skipping, directory names, which commands it runs)
without running the package. The one call that runs for real is the config reader the
pipeline asks (`-m dualspeech.bin.resolve_config`: includes, values, control names)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
