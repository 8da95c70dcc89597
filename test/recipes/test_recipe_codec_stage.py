"""Stage 4 of a corpus recipe uses the paper's codec, WavTokenizer: without its two files it stops
at once (before any token is extracted) with an error that names both files, where they go and
tools/download_models.py; the offline codec stays one --codec-config away."""
from __future__ import annotations

import time

from fake_recipe import fake_librispeech_recipe, linked, run_recipe

from dualspeech.config import load_yaml

OPTIONS = ["--train-parts", "train-clean-100", "--dev-parts", "", "--test-parts", "test-clean"]


def test_stage4_without_wavtokenizer_files_stops_with_how_to(tmp_path):
    env = fake_librispeech_recipe(tmp_path / "corpora")
    recipe = linked(tmp_path, "librispeech")
    assert load_yaml(recipe / "conf/codec.yaml")["codec"]["name"] == "wavtokenizer"
    prep = run_recipe(recipe, env, "--stage", "0", "--stop-stage", "1", *OPTIONS)
    assert prep.returncode == 0, prep.stderr[-3000:]
    t0 = time.monotonic()
    proc = run_recipe(recipe, env, "--stage", "4", "--stop-stage", "4", *OPTIONS)
    took = time.monotonic() - t0
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "WavTokenizer files missing" in out, out[-3000:]
    for needed in ("wavtokenizer_large_unify_600_24k.ckpt",
                   "wavtokenizer_smalldata_frame40_3s_nq1_code4096_dim512_kmeans200_attn.yaml",
                   "exp/wavtokenizer", "tools/download_models.py wavtokenizer", "--codec-config"):
        assert needed in out, (needed, out[-3000:])
    assert "stage 4 (codec): done" not in proc.stderr and not (recipe / "dump").exists()
    assert took < 120, took
