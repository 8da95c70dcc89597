"""An exported model is the same bytes in every process: stage markers, ``model.json`` and the
chaos check hash its files, so a hash-ordered list (PEFT's ``target_modules``) would read as a
changed model after every re-run."""
from __future__ import annotations

import os
import subprocess
import sys

EXPORT = """
import sys
from dualspeech.models.io import export_model
from dualspeech.testing.toy import toy_model
model, _ = toy_model("egs/mini/conf/dualspeechlm_debug.yaml")
export_model(model, sys.argv[1])
"""


def test_adapter_config_is_the_same_bytes_under_any_hash_seed(tmp_path):
    configs = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"model_{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", EXPORT, str(out)], check=True, env=env)
        configs.append((out / "adapter/adapter_config.json").read_bytes())
    assert configs[0] == configs[1] == configs[2]
    assert b'"target_modules"' in configs[0]


def test_torch_checkpoints_do_not_embed_the_temp_name(tmp_path):
    """torch names a zip archive's root after the file it writes: through the temp file (whose
    name holds the pid) every run of the same training wrote different bytes."""
    import torch

    from dualspeech.utils.io import atomic_torch_save

    state = {"w": torch.arange(6.0)}
    a = atomic_torch_save(state, tmp_path / "a" / "final.pt").read_bytes()
    b = atomic_torch_save(state, tmp_path / "b" / "final.pt").read_bytes()
    assert a == b
    assert b".tmp" not in a


def test_a_reloaded_vocab_saves_the_same_bytes(tmp_path):
    """A resumed training loads its extended tokenizer from the experiment (in a new process) and
    exports it; the export must equal the uninterrupted run's (found by ci/chaos.sh: a kill in
    stage 6 changed tokenizer_config.json, ``local_files_only`` recorded as false)."""
    resave = ("import sys\nfrom dualspeech.data.vocab import SpeechVocab\n"
              "SpeechVocab.load(sys.argv[1]).save(sys.argv[2])\n")
    fresh = EXPORT.replace("export_model(model, sys.argv[1])", "model.vocab.save(sys.argv[1])")
    subprocess.run([sys.executable, "-c", fresh, str(tmp_path / "fresh")], check=True)
    subprocess.run([sys.executable, "-c", resave, str(tmp_path / "fresh"), str(tmp_path / "resumed")],
                   check=True)
    for name in ("tokenizer_config.json", "tokenizer.json", "speech_vocab.json"):
        assert (tmp_path / "fresh" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes()
