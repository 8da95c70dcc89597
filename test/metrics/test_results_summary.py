"""README's results summary is what egs/mini/RESULTS.md renders to, and the renderer reads the
tables stage 8 writes: rows, controls, provenance, the corpus warning, the computed claim."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dualspeech.bin import results_summary as cli
from dualspeech.metrics.report import provenance_notes, write_report
from dualspeech.metrics.summary import BEGIN, END, parse_results, render, summarize

REPO = Path(__file__).resolve().parents[2]


def est(v, lo, hi):
    return {"value": v, "ci_low": lo, "ci_high": hi}


def results() -> dict:
    row = {"counts": {"n": 8}, "meta": {}, "n": 8}
    return {
        "mini_asr_test": {**row, "task": "asr", "metrics": {"wer": est(40.0, 30.0, 50.0), "cer": est(20.0, 10.0, 30.0)},
                          "controls": {"wer": {"shuffled_speech": est(90.0, 80.0, 100.0)}},
                          "ground_truth": {"wer": est(10.0, 5.0, 15.0)}},
        "mini_ser_test": {**row, "task": "ser", "metrics": {"accuracy": est(30.0, 20.0, 40.0)},
                          "controls": {"accuracy": {"shuffled_speech": est(25.0, 15.0, 35.0),
                                                    "chance": est(25.0, 25.0, 25.0)}}},
        "mini_tts_test": {**row, "task": "tts", "metrics": {"wer": est(100.85, 99.0, 102.0),
                                                            "sim": est(0.47, 0.44, 0.5)},
                          "controls": {"wer": {"resynth": est(102.0, 90.0, 110.0)}}},
    }


def _modified(path: str) -> bool:
    proc = subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", path])
    return proc.returncode == 1


def _committed(path: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), "show", f"HEAD:{path}"], capture_output=True,
                          text=True, check=True).stdout


def test_readme_block_is_what_the_committed_results_render_to(tmp_path):
    readme, results = (REPO / "README.md").read_text(), REPO / "egs" / "mini" / "RESULTS.md"
    if _modified("egs/mini/RESULTS.md") and not _modified("README.md"):
        # a default demo run rewrote the table here: check the committed pair instead
        readme, results = _committed("README.md"), tmp_path / "RESULTS.md"
        results.write_text(_committed("egs/mini/RESULTS.md"))
    block = summarize(results, "egs/mini/RESULTS.md")
    assert block in readme, ("README.md's results summary differs from egs/mini/RESULTS.md: run "
                             "python -m dualspeech.bin.results_summary")
    assert "| ASR | mini_asr_test |" in block      # the committed table was parsed, not skipped


def test_summary_of_a_stage8_table(tmp_path):
    notes = provenance_notes("abc123def456", "0123456789ab (160 wavs; festival 1:2.5.0-9)",
                             "this corpus differs from the reference r.json: text hash x (reference y)")
    _, md = write_report(results(), tmp_path, [], {}, "mini (tiny)", notes)
    parsed = parse_results(md.read_text())
    assert (parsed.commit, parsed.title) == ("abc123def456", "mini (tiny)")
    block = render(parsed, "exp/RESULTS.md")
    assert block.startswith(BEGIN.format(source="exp/RESULTS.md")) and block.endswith(END)
    assert "made at commit abc123def456 from the corpus with fingerprint 0123456789ab." in block
    assert "**Corpus warning**: this corpus differs" in block
    lines = block.splitlines()
    assert ("| ASR | mini_asr_test | 8 | WER % | **40.0 [30.0, 50.0]** | shuffled 90.0 [80.0, 100.0] | "
            "10.0 [5.0, 15.0] |") in lines
    assert not any("CER" in ln for ln in lines)                  # headline metrics only
    assert ("| SER | mini_ser_test | 8 | accuracy % | 30.0 [20.0, 40.0] | shuffled 25.0 [15.0, 35.0]; "
            "chance 25.0 | - |") in lines
    # printed 100.85 rounds half up, as a reader would
    assert "| TTS | mini_tts_test | 8 | WER % | 100.9 [99.0, 102.0] | resynth 102.0 [90.0, 110.0] | - |" in lines
    assert "| TTS | mini_tts_test | 8 | SIM | 0.470 [0.440, 0.500] | - | - |" in lines
    assert ("Beyond their shuffled-speech control with non-overlapping 95 % intervals (bold): "
            "ASR WER %; not beyond it: SER accuracy %.") in lines


def test_a_table_without_provenance_says_so(tmp_path):
    _, md = write_report(results(), tmp_path, [], {}, "old")
    block = render(parse_results(md.read_text()), "RESULTS.md")
    assert "which names no commit or corpus fingerprint" in block


def test_cli_rewrites_and_checks_the_block(tmp_path, capsys):
    _, md = write_report(results(), tmp_path, [], {}, "t", provenance_notes("c0ffee", None))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{BEGIN.format(source='RESULTS.md')}\nstale 12.3\n{END}\n\noutro\n")
    args = ["--results", str(md), "--readme", str(readme)]
    with pytest.raises(SystemExit, match="stale"):
        cli.main([*args, "--check"])
    cli.main(args)
    text = readme.read_text()
    assert text.startswith("intro\n\n") and text.endswith("\n\noutro\n") and "stale 12.3" not in text
    assert "fingerprint none (the corpus has no fingerprint.json)" in text
    cli.main([*args, "--check"])
    assert "matches" in capsys.readouterr().out
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no results-summary block"):
        cli.main(args)
    (tmp_path / "empty.md").write_text("# nothing\n")
    with pytest.raises(SystemExit, match="no results table"):
        cli.main(["--results", str(tmp_path / "empty.md"), "--readme", str(readme)])
