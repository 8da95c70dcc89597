"""Recipe plumbing in utils/: option parsing, logging, the shard job launcher, stage markers.

Each test runs the real bash scripts in a scratch directory that links utils/ like a recipe does.
"""
from __future__ import annotations

import os
import re
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    (tmp_path / "utils").symlink_to(REPO / "utils")
    return tmp_path


def bash(cwd: Path, script: str, *args: str, env: dict | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    path = cwd / "script.sh"
    path.write_text(textwrap.dedent(script))
    proc = subprocess.run(["bash", str(path), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


OPTIONS_SCRIPT = """\
    set -euo pipefail
    help_message="Usage: script.sh [options] <dir>"
    stage=0          # first stage to run
    foo_bar=abc      # a string option
    use_gpu=false    # a boolean option
    . utils/parse_options.sh
    echo "stage=$stage foo_bar=$foo_bar use_gpu=$use_gpu rest=$*"
    echo "cmd=$ds_command_line"
"""


def test_parse_options_sets_declared_variables(recipe):
    out = bash(recipe, OPTIONS_SCRIPT, "--stage", "3", "--foo-bar", "x y", "--use_gpu", "true",
               "pos1", "pos2").stdout
    assert "stage=3 foo_bar=x y use_gpu=true rest=pos1 pos2" in out
    assert "--foo-bar x\\ y" in out           # the command line is kept, re-quotable
    out = bash(recipe, OPTIONS_SCRIPT, "--foo_bar=z", "--use-gpu", "--stage", "2").stdout
    assert "stage=2 foo_bar=z use_gpu=true rest=" in out   # bare boolean flag means true
    out = bash(recipe, OPTIONS_SCRIPT, "--stage", "1", "--", "--not-an-option").stdout
    assert "rest=--not-an-option" in out


@pytest.mark.parametrize("args, message", [
    (["--no-such", "1"], "unknown option '--no-such'"),
    (["--use-gpu", "yes"], "option --use-gpu is boolean: expected true or false, got 'yes'"),
    (["--stage"], "option --stage needs a value"),
])
def test_parse_options_rejects_bad_options(recipe, args, message):
    proc = bash(recipe, OPTIONS_SCRIPT, *args, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "stage=" not in proc.stdout


def test_parse_options_help_prints_option_block(recipe):
    proc = bash(recipe, OPTIONS_SCRIPT, "--help", "--stage", "3")
    assert proc.stdout.startswith("Usage: script.sh [options] <dir>")
    assert re.search(r"--stage\s+\[0\]\s+first stage to run", proc.stdout)
    assert re.search(r"--foo-bar\s+\[abc\]\s+a string option", proc.stdout)
    assert "help-message" not in proc.stdout and "stage=" not in proc.stdout


def test_parse_options_config_file(recipe):
    (recipe / "opts.conf").write_text("stage=7\nfoo_bar=from_file\n")
    out = bash(recipe, OPTIONS_SCRIPT, "--config", "opts.conf", "--stage", "8").stdout
    assert "stage=8 foo_bar=from_file" in out


def test_log_names_script_and_line(recipe):
    proc = bash(recipe, """\
        . utils/log.sh
        f() { log "inside"; }
        log "hello world"
        f
        die "broken input"
        echo unreachable
    """, check=False)
    lines = proc.stderr.splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \(script\.sh:3\) hello world", lines[0])
    assert lines[1].endswith("(script.sh:2:f) inside")
    assert lines[2].endswith("(script.sh:5) ERROR: broken input")
    assert proc.returncode == 1 and "unreachable" not in proc.stdout


# ---------------------------------------------------------------- run_jobs.sh

def run_jobs(recipe: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["utils/run_jobs.sh", *args], cwd=recipe, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_run_jobs_runs_shards_with_logs(recipe):
    proc = run_jobs(recipe, "--max-jobs-run", "2", "JOB=1:4", "log/x.JOB.log",
                    "python3", "-c", "import sys; open('out.JOB', 'w').write(sys.argv[1])", "arg JOB")
    assert proc.returncode == 0, proc.stderr
    for j in range(1, 5):
        assert (recipe / f"out.{j}").read_text() == f"arg {j}"
        log = (recipe / f"log/x.{j}.log").read_text().splitlines()
        assert log[0].startswith("# python3 -c") and f"arg\\ {j}" in log[0]
        assert log[-1].startswith("# Ended (code 0)")


def test_run_jobs_single_command_string_uses_shell(recipe):
    proc = run_jobs(recipe, "JOB=1:2", "log/p.JOB.log", "echo JOB-a JOB-b | tr a-z A-Z > p.JOB")
    assert proc.returncode == 0, proc.stderr
    assert (recipe / "p.2").read_text() == "2-A 2-B\n"


def test_run_jobs_failure_prints_command_and_log_tail(recipe):
    proc = run_jobs(recipe, "--tail-lines", "3", "JOB=1:3", "log/f.JOB.log",
                    "for i in 1 2 3 4 5; do echo line$i-JOB; done; [ JOB != 2 ] || exit 7")
    assert proc.returncode == 1
    assert "job 2 of 1..3 failed: for i in 1 2 3 4 5; do echo line$i-2" in proc.stderr
    assert "---- last 3 lines of log/f.2.log ----" in proc.stderr
    tail = proc.stderr.split("---- last 3 lines of log/f.2.log ----\n")[1].splitlines()[:3]
    assert tail[:2] == ["line4-2", "line5-2"] and tail[2].startswith("# Ended (code 7)")
    assert "1 of 3 jobs failed" in proc.stderr
    assert "job 1 " not in proc.stderr and "job 3 " not in proc.stderr


def test_run_jobs_skips_finished_jobs_until_command_or_stage_hash_changes(recipe):
    cmd = ["JOB=1:3", "log/r.JOB.log", "echo run >> count.JOB; [ JOB != 3 ] || [ -f ok ]"]
    assert run_jobs(recipe, *cmd).returncode == 1            # job 3 fails
    (recipe / "ok").touch()
    proc = run_jobs(recipe, *cmd)
    assert proc.returncode == 0 and "2 of 3 jobs already done" in proc.stderr
    assert [(recipe / f"count.{j}").read_text().count("run") for j in (1, 2, 3)] == [1, 1, 2]
    run_jobs(recipe, *cmd, env={"DS_STAGE_HASH": "other-inputs"})
    assert [(recipe / f"count.{j}").read_text().count("run") for j in (1, 2, 3)] == [2, 2, 3]
    run_jobs(recipe, "--resume", "false", *cmd, env={"DS_STAGE_HASH": "other-inputs"})
    assert (recipe / "count.1").read_text().count("run") == 3


def test_run_jobs_rejects_log_without_placeholder(recipe):
    proc = run_jobs(recipe, "JOB=1:2", "log/same.log", "true")
    assert proc.returncode == 1 and "must contain JOB" in proc.stderr


SLURM_ARGS = ["--backend", "slurm", "--gpu", "2", "--mem", "16G", "--time", "1:00:00",
              "--max-jobs-run", "2", "--slurm-opts", "--partition=gpu"]


def test_run_jobs_slurm_script_text(recipe):
    proc = run_jobs(recipe, *SLURM_ARGS, "--dry-run", "true", "JOB=1:3", "exp/log/ext.JOB.log",
                    "python", "-m", "m", "--shard", "JOB/3", "--name", "a b")
    assert proc.returncode == 0, proc.stderr
    script = (recipe / "exp/log/q/ext.sbatch").read_text()
    assert proc.stdout.strip() == "exp/log/q/ext.sbatch"
    for line in ["#SBATCH --job-name=ext", "#SBATCH --array=1,2,3%2",
                 "#SBATCH --output=exp/log/q/ext.%a.out", "#SBATCH --gres=gpu:2",
                 "#SBATCH --mem=16G", "#SBATCH --time=1:00:00", "#SBATCH --partition=gpu"]:
        assert line + "\n" in script
    last = script.strip().splitlines()[-1]
    assert last.startswith("exec ") and "run_jobs.sh --backend local" in last
    assert ('"JOB=${SLURM_ARRAY_TASK_ID}:${SLURM_ARRAY_TASK_ID}" exp/log/ext.JOB.log '
            'python -m m --shard JOB/3 --name a\\ b') in last


def test_run_jobs_slurm_runs_array_through_sbatch(recipe, tmp_path_factory):
    """A stand-in sbatch runs each array task the way Slurm would (SLURM_ARRAY_TASK_ID set)."""
    bindir = tmp_path_factory.mktemp("bin")
    sbatch = bindir / "sbatch"
    sbatch.write_text(textwrap.dedent("""\
        #!/usr/bin/env bash
        [ "$1" = --wait ] || exit 2
        array=$(sed -n 's/^#SBATCH --array=\\([0-9,]*\\).*/\\1/p' "$2")
        echo "$array" >> sbatch_calls
        rc=0
        for i in ${array//,/ }; do SLURM_ARRAY_TASK_ID=$i bash "$2" || rc=1; done
        exit $rc
    """))
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    args = ["--backend", "slurm", "JOB=1:3", "log/s.JOB.log", "echo JOB >> done.JOB; [ JOB != 2 ] || [ -f ok ]"]
    proc = run_jobs(recipe, *args, env=env)
    assert proc.returncode == 1 and "job 2 of 1..3 failed" in proc.stderr
    (recipe / "ok").touch()
    proc = run_jobs(recipe, *args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (recipe / "sbatch_calls").read_text().split() == ["1,2,3", "2"]   # only the failed one again
    assert (recipe / "done.2").read_text() == "2\n2\n"


def test_run_jobs_slurm_without_sbatch_is_a_clear_error(recipe):
    proc = run_jobs(recipe, "--backend", "slurm", "JOB=1:2", "log/n.JOB.log", "true",
                    env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1 and "needs sbatch on PATH" in proc.stderr


# ---------------------------------------------------------------- stage.sh

STAGE_SCRIPT = """\
    set -euo pipefail
    . utils/log.sh
    force=false
    . utils/parse_options.sh
    . utils/stage.sh
    if stage_begin 1 copy --inputs in.txt conf --args "$*" --clean out; then
      mkdir -p out && cp in.txt out/copy.txt && echo ran >> runs
      stage_end 1 copy out
    fi
"""


def runs(recipe: Path) -> int:
    return (recipe / "runs").read_text().count("ran") if (recipe / "runs").exists() else 0


def test_stage_skips_until_inputs_args_or_outputs_change(recipe):
    (recipe / "in.txt").write_text("a\n")
    (recipe / "conf").mkdir()
    (recipe / "conf/x.yaml").write_text("k: 1\n")
    bash(recipe, STAGE_SCRIPT)
    proc = bash(recipe, STAGE_SCRIPT)
    assert runs(recipe) == 1 and "stage 1 (copy): up to date" in proc.stderr
    (recipe / "in.txt").write_text("b\n")                    # input content
    bash(recipe, STAGE_SCRIPT)
    assert runs(recipe) == 2 and (recipe / "out/copy.txt").read_text() == "b\n"
    bash(recipe, STAGE_SCRIPT, "--", "new-arg")              # arguments
    assert runs(recipe) == 3
    bash(recipe, STAGE_SCRIPT, "--", "new-arg")
    assert runs(recipe) == 3
    (recipe / "conf/y.yaml").write_text("k: 2\n")            # a file added to an input dir
    bash(recipe, STAGE_SCRIPT, "--", "new-arg")
    assert runs(recipe) == 4
    (recipe / "out/copy.txt").unlink()                       # an output went missing
    bash(recipe, STAGE_SCRIPT, "--", "new-arg")
    assert runs(recipe) == 5
    bash(recipe, STAGE_SCRIPT, "--force", "true", "--", "new-arg")
    assert runs(recipe) == 6
    marker = (recipe / "exp/stages/stage1_copy.done").read_text()
    assert re.search(r"^hash [0-9a-f]{64}$", marker, re.M) and "output out\n" in marker


def test_stage_table_reports_each_stage_time_and_what_ran(recipe):
    (recipe / "in.txt").write_text("a\n")
    (recipe / "conf").mkdir()
    table_script = STAGE_SCRIPT.replace("cp in.txt", "sleep 0.3 && cp in.txt") + "stage_table\n"
    first = bash(recipe, table_script).stdout.splitlines()
    assert first[0].split() == ["stage", "name", "seconds", "this", "run"]
    stage, name, secs, ran = first[1].split()
    assert (stage, name, ran) == ("stage1", "copy", "ran") and 0.3 <= float(secs) < 30
    assert first[-1].split()[:2] == ["total", secs]
    again = bash(recipe, table_script).stdout.splitlines()    # up to date: the recorded time
    assert again[1].split() == ["stage1", "copy", secs, "skipped"]


def test_stage_missing_input_is_a_clear_error(recipe):
    proc = bash(recipe, STAGE_SCRIPT, check=False)
    assert proc.returncode == 1
    assert "stage input 'in.txt' does not exist" in proc.stderr and runs(recipe) == 0


def test_stage_missing_output_fails_and_leaves_no_marker(recipe):
    (recipe / "in.txt").write_text("a\n")
    (recipe / "conf").mkdir()
    proc = bash(recipe, STAGE_SCRIPT.replace("stage_end 1 copy out", "stage_end 1 copy out/none"),
                check=False)
    assert proc.returncode == 1 and "did not produce all its outputs" in proc.stderr
    assert not (recipe / "exp/stages/stage1_copy.done").exists()


def test_run_jobs_terminated_stops_its_jobs(recipe):
    """SIGTERM to the launcher (Ctrl-C, a scheduler) ends the running jobs too; they are not
    marked done, so a re-run redoes exactly them."""
    import signal
    import time

    proc = subprocess.Popen(["utils/run_jobs.sh", "JOB=1:2", "log/k.JOB.log",
                             "sleep 60 & echo $! > pid.JOB; wait; touch finished.JOB"], cwd=recipe,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while not all((recipe / f"pid.{j}").exists() for j in (1, 2)) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 143
    for j in (1, 2):
        status = Path(f"/proc/{int((recipe / f'pid.{j}').read_text())}/status")
        time.sleep(0.2)
        alive = status.exists() and "\nState:\tZ" not in status.read_text()   # zombies are dead
        assert not alive, f"job {j} still running"
        assert "# Killed" in (recipe / f"log/k.{j}.log").read_text()
        assert not (recipe / f"log/.k.{j}.log.done").exists()
        assert not (recipe / f"finished.{j}").exists()


def test_run_jobs_spreads_gpu_jobs_over_the_machine(recipe):
    show = 'echo "[${CUDA_VISIBLE_DEVICES-unset}]" > dev.JOB'
    assert run_jobs(recipe, "--gpu", "2", "JOB=1:3", "log/g.JOB.log", show,
                    env={"DS_NUM_GPUS": "4"}).returncode == 0
    assert [(recipe / f"dev.{j}").read_text() for j in (1, 2, 3)] == ["[0,1]\n", "[2,3]\n", "[0,1]\n"]
    clean = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    proc = subprocess.run(["utils/run_jobs.sh", "--resume", "false", "JOB=1:2", "log/g.JOB.log", show],
                          cwd=recipe, env=clean, capture_output=True, text=True)
    assert proc.returncode == 0 and (recipe / "dev.1").read_text() == "[unset]\n"   # CPU jobs: untouched
    assert run_jobs(recipe, "--resume", "false", "--gpu", "1", "JOB=1:2", "log/g.JOB.log", show,
                    env={"DS_NUM_GPUS": "4", "CUDA_VISIBLE_DEVICES": "5"}).returncode == 0
    assert (recipe / "dev.2").read_text() == "[5]\n"                                # the caller's choice wins


def test_download_lhotse_runs_the_pipelines_python(recipe):
    fake = recipe / "fakepy"
    fake.write_text('#!/usr/bin/env bash\necho "$@" > "$(dirname "$0")/called"\ncat > /dev/null\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    bash(recipe, 'utils/download_lhotse.sh download_librispeech "$1" "dev-clean test-clean" "$2"\n',
         str(recipe / "corpora/LibriSpeech"), str(fake))
    assert (recipe / "called").read_text().split() == [
        "-", "download_librispeech", str(recipe / "corpora"), "LibriSpeech", "dev-clean", "test-clean"]
