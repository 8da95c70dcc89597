"""Training launch commands (utils/launch.sh) for CPU, one node x 4 GPUs and 2 nodes x 4 GPUs
under Slurm, the multi-node sbatch header of utils/run_jobs.sh, and what stage 6 of the pipeline
hands to the job launcher with --num-nodes. Slurm's commands are stand-in scripts: `scontrol`
expands the node list, `srun` runs the task once per node with SLURM_NODEID set (as Slurm does
with --ntasks-per-node 1), `accelerate` / `torchrun` record the arguments they were given."""
from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "utils" / "launch.sh"
TRAIN = ["-m", "dualspeech.bin.train", "--conf", "conf/a b.yaml", "--exp-dir", "exp/x"]
# the pipeline's default --python is `python`, which reads the configs: this checkout's package
PYTHON_ON_PATH = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}


def _tool(bindir: Path, name: str, body: str) -> None:
    path = bindir / name
    path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def slurm(tmp_path: Path) -> dict:
    """PATH with stand-in scontrol/srun/accelerate/torchrun and a 2-node allocation's env."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _tool(bindir, "scontrol", """\
        [ "$1 $2 $3" = "show hostnames gpu[07-08]" ] || { echo "unexpected: $*" >&2; exit 2; }
        printf 'gpu07\\ngpu08\\n'
    """)
    _tool(bindir, "srun", """\
        echo "srun $*" >> "$CALLS"
        while [ "${1#--}" != "$1" ]; do   # srun's own options: --opt=value or --opt value
          if [ "${1#*=}" != "$1" ]; then shift; else shift 2; fi
        done
        for k in 0 1; do SLURM_NODEID=$k "$@" || exit 1; done
    """)
    for name in ("accelerate", "torchrun"):
        _tool(bindir, name, f'echo "node $SLURM_NODEID addr $DS_MASTER_ADDR: {name} $*" >> "$CALLS"\n')
    return {"PATH": f"{bindir}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls"),
            "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4242"}


def launch(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", str(LAUNCH), *args], capture_output=True, text=True,
                          env={**clean, **(env or {})}, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def printed(*args: str, env: dict | None = None) -> list[list[str]]:
    return [shlex.split(line) for line in launch(*args, "--print", "true", "--", *TRAIN,
                                                 env=env).stdout.splitlines()]


def test_cpu_and_one_gpu_run_plain_python():
    assert printed() == [["python", *TRAIN]]
    assert printed("--gpus-per-node", "1", "--python", ".venv/bin/python") == [[".venv/bin/python", *TRAIN]]


def test_one_node_four_gpus():
    assert printed("--gpus-per-node", "4") == [
        ["accelerate", "launch", "--multi_gpu", "--num_processes", "4", "--num_machines", "1", *TRAIN]]
    conf = str(REPO / "egs/multitask/conf/launch/deepspeed_zero2.yaml")
    assert printed("--gpus-per-node", "4", "--config-file", conf) == [
        ["accelerate", "launch", "--config_file", conf, "--num_processes", "4", "--num_machines", "1",
         *TRAIN]]
    assert printed("--gpus-per-node", "4", "--launcher", "torchrun") == [
        ["torchrun", "--nnodes", "1", "--nproc_per_node", "4", "--standalone", *TRAIN]]
    # one FSDP process still goes through accelerate, which applies the config
    conf = str(REPO / "egs/multitask/conf/launch/fsdp.yaml")
    assert printed("--gpus-per-node", "1", "--config-file", conf)[0][:6] == [
        "accelerate", "launch", "--config_file", conf, "--num_processes", "1"]


def test_two_nodes_four_gpus_print(slurm):
    srun_line, node0, node1 = printed("--num-nodes", "2", "--gpus-per-node", "4", env=slurm)
    assert srun_line[:9] == ["DS_MASTER_ADDR=gpu07", "srun", "--nodes", "2", "--ntasks", "2",
                             "--ntasks-per-node", "1", "--kill-on-bad-exit=1"]
    assert srun_line[9].endswith("utils/launch.sh")     # the job's CPUs are not passed: none set
    for rank, cmd in enumerate([node0, node1]):
        assert cmd == ["accelerate", "launch", "--multi_gpu", "--num_processes", "8",
                       "--num_machines", "2", "--machine_rank", str(rank),
                       "--main_process_ip", "gpu07", "--main_process_port", str(29500 + 4242 % 1000),
                       *TRAIN]


def test_two_nodes_four_gpus_run_one_srun_with_a_launcher_per_node(slurm):
    conf = str(REPO / "egs/multitask/conf/launch/fsdp.yaml")
    launch("--num-nodes", "2", "--gpus-per-node", "4", "--config-file", conf, "--port", "31000",
           "--", *TRAIN, env={**slurm, "SLURM_CPUS_PER_TASK": "32"})
    calls = Path(slurm["CALLS"]).read_text().splitlines()
    assert len(calls) == 3 and calls[0].startswith(
        "srun --nodes 2 --ntasks 2 --ntasks-per-node 1 --kill-on-bad-exit=1 --cpus-per-task 32 ")
    tail = f"--config_file {conf} --num_processes 8 --num_machines 2"
    for rank, call in enumerate(calls[1:]):
        assert call == (f"node {rank} addr gpu07: accelerate launch {tail} --machine_rank {rank} "
                        f"--main_process_ip gpu07 --main_process_port 31000 {shlex.join(TRAIN)}"
                        .replace("'conf/a b.yaml'", "conf/a b.yaml"))


def test_two_nodes_torchrun_uses_c10d_rendezvous(slurm):
    launch("--num-nodes", "2", "--gpus-per-node", "4", "--launcher", "torchrun", "--", *TRAIN,
           env=slurm)
    calls = Path(slurm["CALLS"]).read_text().splitlines()[1:]
    want = ("torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint gpu07:29742 "
            "--rdzv_id 4242 -m dualspeech.bin.train")
    assert [c.split(": ", 1)[1].split(" --conf")[0] for c in calls] == [want, want]


@pytest.mark.parametrize("args, env, message", [
    (["--num-nodes", "2", "--gpus-per-node", "4"], {}, "SLURM_JOB_NODELIST is not set"),
    (["--num-nodes", "2"], {}, "needs GPUs"),
    (["--num-nodes", "3", "--gpus-per-node", "4"], "slurm", "the allocation has 2 node(s): gpu07 gpu08"),
    (["--num-nodes", "2", "--gpus-per-node", "4", "--node-task", "true"], "slurm",
     "runs inside srun (SLURM_NODEID is not set)"),
    (["--num-nodes", "two"], {}, "--num-nodes must be a positive integer"),
    (["--launcher", "mpirun"], {}, "--launcher must be accelerate or torchrun"),
    (["--config-file", "nope.yaml"], {}, "--config-file nope.yaml does not exist"),
])
def test_bad_launch_settings_are_clear_errors(slurm, args, env, message):
    proc = launch(*args, "--", *TRAIN, env=slurm if env == "slurm" else env, check=False)
    assert proc.returncode == 1 and message in proc.stderr


def test_run_jobs_asks_slurm_for_nodes(tmp_path):
    (tmp_path / "utils").symlink_to(REPO / "utils")
    proc = subprocess.run(["bash", "utils/run_jobs.sh", "--backend", "slurm", "--dry-run", "true",
                           "--gpu", "4", "--nodes", "2", "exp/log/train.log", "utils/launch.sh", "-m", "x"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    script = (tmp_path / "exp/log/q/train.sbatch").read_text()
    for line in ["#SBATCH --gres=gpu:4", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1"]:
        assert line + "\n" in script
    proc = subprocess.run(["bash", "utils/run_jobs.sh", "--nodes", "0", "log", "true"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "--nodes must be a positive integer" in proc.stderr


@pytest.mark.parametrize("options, nodes, launcher", [
    ([], [], ["python"]),
    (["--ngpu", "4"], [], ["utils/launch.sh", "--num-nodes", "1", "--gpus-per-node", "4", "--python", "python"]),
    (["--ngpu", "4", "--num-nodes", "2", "--launch-config", "conf/launch/ddp.yaml"], ["--nodes", "2"],
     ["utils/launch.sh", "--num-nodes", "2", "--gpus-per-node", "4", "--python", "python",
      "--config-file", "conf/launch/ddp.yaml"]),
])
def test_pipeline_stage6_launch(tmp_path, options, nodes, launcher):
    """Stage 6 of the real pipeline with a stand-in gpu_cmd that records its arguments."""
    rec = tmp_path / "recipe"
    for name in ("pipeline.sh", "cmd.sh"):
        (rec / name).parent.mkdir(exist_ok=True)
        (rec / name).symlink_to(REPO / "egs/TEMPLATE" / name)
    (rec / "utils").symlink_to(REPO / "utils")
    for d in ("dump/tasks", "dump/cuts", "conf/launch"):
        (rec / d).mkdir(parents=True)
    (rec / "conf/train.yaml").write_text("trainer: {}\n")
    (rec / "conf/launch/ddp.yaml").write_text("num_machines: 1\n")
    fake = tmp_path / "gpu_cmd"
    _tool(fake.parent, fake.name, """\
        printf '%s\\n' "$@" > gpu_cmd_args
        while [ "$1" != --exp-dir ]; do shift; done; mkdir -p "$2/model"
    """)
    proc = subprocess.run(["bash", "pipeline.sh", "--stage", "6", "--stop-stage", "6", "--corpus", "c",
                           "--train-parts", "p", "--train-config", "conf/train.yaml", *options],
                          cwd=rec, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "gpu_cmd": str(fake), **PYTHON_ON_PATH})
    assert proc.returncode == 0, proc.stderr
    args = (rec / "gpu_cmd_args").read_text().splitlines()
    assert args[:2 + len(nodes)] == ["--gpu", options[1] if options else "0", *nodes]
    assert args[2 + len(nodes)] == "exp/log/stage6_train.log"
    rest = args[3 + len(nodes):]
    assert rest[:len(launcher) + 2] == [*launcher, "-m", "dualspeech.bin.train"]
