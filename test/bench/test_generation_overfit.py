"""The generation learnability bench, small: 2 sentences x 2 voices, short training. It runs
every stage for real (synthesis, USTokenizer, VQ-Mel, extraction, shards, training, decoding,
the three scored versions) and must print a ratio; a second run reuses every stage."""
import re

import pytest


@pytest.mark.slow
def test_generation_overfit_small(tmp_path, capsys):
    from dualspeech.bench.generation_overfit import run

    argv = ["--num-sentences", "2", "--work-dir", str(tmp_path), "--set", "trainer.max_steps=60",
            "--set", "trainer.valid_every=0", "--set", "model.semantic_vocab=speech",
            "--ustokenizer-set", "trainer.max_steps=20", "--codec-set", "vqmel_train.steps=100"]
    run(argv)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert re.fullmatch(r"overfit_wer_ratio=\d+\.\d{3}", lines[-1]), lines[-1]
    rows = [ln for ln in lines if re.match(r"\s+ovf_\d{3}_spk\d\d ", ln)]
    assert len(rows) == 2 * 4, rows   # 4 utterances, TTS and VC
    for task in ("TTS", "VC"):
        assert any(ln.startswith(task) for ln in lines), task
    assert "ended with end-of-audio" in out
    # same arguments: every stage's output is reused, the numbers are the same
    run(argv)
    again = capsys.readouterr().out.strip().splitlines()
    assert again[-1] == lines[-1]
    assert re.search(r"corpus 0, ustokenizer 0, codec 0, tokens 0, task_data 0, train 0, "
                     r"decode 0", "\n".join(again))
