"""Every corpus recipe runs stages 0-2 (link the corpus, prepare manifests, check task data) on
a tiny fake corpus in the corpus's real layout, and a missing corpus is a clear error.

The layouts follow test/data/test_data_corpora.py (whose LibriSpeech builder and file helpers are
reused); here every file is valid, so each task ends up with examples after stage 2.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from lhotse import CutSet

from fake_recipe import RECIPES, fake_librispeech_recipe, linked, run_recipe

PREPARED = {"librispeech": ["librispeech", "sc"], "cvss": ["covost2", "cvss"],
            "multitask": ["librispeech", "sc", "covost2", "cvss", "libritts_r", "iemocap",
                          "libriheavy", "vctk"]}   # corpora each recipe's stage 1 prepares


def logging_python(recipe: Path) -> Path:
    """A --python that logs each call (to show every stage-1 script goes through it)."""
    wrapper = recipe / "logged_python"
    wrapper.write_text('#!/usr/bin/env bash\necho "$*" >> "$(dirname "$0")/python_calls.log"\n'
                       'exec python "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_data_stages_on_fake_corpus(tmp_path, name):
    build, options, expected = RECIPES[name]
    env = build(tmp_path / "corpora")
    recipe = linked(tmp_path, name)
    proc = run_recipe(recipe, env, "--stage", "0", "--stop-stage", "2", "--python",
                      str(logging_python(recipe)), *options)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for stage in ("0 (corpus)", "1 (manifests)", "2 (check)"):
        assert f"stage {stage}: done" in proc.stderr
    calls = (recipe / "python_calls.log").read_text()      # local/data.sh uses --python too
    prepared = re.findall(r"-m dualspeech\.bin\.prepare_corpus (\S+) .*--nj \d", calls)
    assert sorted(prepared) == sorted(PREPARED.get(name, [name])), calls
    for var, path in env.items():                            # stage 0 linked every location
        assert (recipe / "db" / var.lower()).resolve() == Path(path).resolve()
    kept = {}
    for row in (recipe / "data/checked/summary.tsv").read_text().splitlines()[1:]:
        corpus, part, task, k, total = row.split("\t")
        kept[f"{corpus}_{task}_{part}"] = int(k)
        assert k == total                                    # every prepared example is usable
    for manifest, n in expected.items():
        assert kept.get(manifest, 0) >= n, (manifest, kept)
        assert len(CutSet.from_file(recipe / f"data/checked/{manifest}.jsonl.gz")) == kept[manifest]
    again = run_recipe(recipe, env, "--stage", "0", "--stop-stage", "2", *options)
    assert again.returncode == 0 and again.stderr.count("up to date") == 3


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_missing_corpus_is_a_clear_error(tmp_path, name):
    recipe = linked(tmp_path, name)
    proc = run_recipe(recipe, {}, "--stage", "0", "--stop-stage", "0")
    assert proc.returncode == 1
    assert "is not set: put the corpus location in db.sh" in proc.stderr
    assert "README.md shows where to get it and the expected layout" in proc.stderr
    env = {v: tmp_path / "nowhere" for v in ("LIBRISPEECH", "LIBRITTS_R", "CVSS_C", "COVOST2",
                                             "COMMONVOICE_EN", "COMMONVOICE_ES", "COMMONVOICE_FR",
                                             "IEMOCAP", "LIBRIHEAVY", "LIBRILIGHT", "VCTK")}
    proc = run_recipe(recipe, env, "--stage", "0", "--stop-stage", "0")
    assert proc.returncode == 1 and f"={tmp_path / 'nowhere'} (db.sh) does not exist" in proc.stderr


def test_recipe_missing_parts_are_reported_at_stage_1(tmp_path):
    env = fake_librispeech_recipe(tmp_path / "corpora")
    recipe = linked(tmp_path, "librispeech")
    proc = run_recipe(recipe, env, "--stage", "0", "--stop-stage", "2", "--train-parts",
                      "train-clean-100 train-clean-360", "--dev-parts", "dev-other", "--test-parts", "test-clean")
    assert proc.returncode == 1
    assert "stage 1: the prepared data has no librispeech:train-clean-360 librispeech:dev-other" in proc.stderr
    assert f"LIBRISPEECH={env['LIBRISPEECH']}" in proc.stderr and "--train-parts" in proc.stderr
    assert "stage 2 (check)" not in proc.stderr
