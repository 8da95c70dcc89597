#!/usr/bin/env bash
# Start a training entry point on this machine's GPUs, or on several Slurm nodes at once.
#
#   utils/launch.sh [options] -- -m dualspeech.bin.train --conf ... (the python arguments)
#
#   CPU or one GPU, no --config-file:  python -m dualspeech.bin.train ...
#   one node, G GPUs:                  accelerate launch --multi_gpu --num_processes G -m ...
#   N nodes x G GPUs (inside a Slurm allocation of N nodes, e.g. an sbatch with --nodes N):
#     srun --nodes N --ntasks N --ntasks-per-node 1 utils/launch.sh --node-task true ...
#     and on node k: accelerate launch --multi_gpu --num_machines N --machine_rank k
#       --main_process_ip <first host of the job> --main_process_port P --num_processes N*G -m ...
#
# One srun per job starts one launcher per node; the launcher starts the node's G processes. The
# rendezvous host is the first host of $SLURM_JOB_NODELIST (`scontrol show hostnames`), the port
# --port (default 29500 + job id mod 1000, so two jobs sharing a node do not collide); each node's
# rank is its $SLURM_NODEID. --launcher torchrun uses torchrun's c10d rendezvous at the same host
# and port instead (no ranks to hand out). --config-file passes an accelerate config
# (conf/launch/{ddp,fsdp,deepspeed_zero2}.yaml); the process and machine counts given here override
# the ones written in it. --print true prints the command (one line per node for N > 1) instead
# of running it.
set -euo pipefail

num_nodes=1          # nodes (> 1: needs a Slurm allocation with that many nodes)
gpus_per_node=0      # GPUs (training processes) per node; 0 = CPU
launcher=accelerate  # accelerate | torchrun
config_file=         # accelerate config file (FSDP, DeepSpeed, ...)
port=                # rendezvous port (default 29500 + SLURM_JOB_ID mod 1000)
python=python        # the python of the single-process case
print=false          # print the command(s) instead of running them
node_task=false      # internal: set on the srun task of each node
help_message="Usage: utils/launch.sh [options] -- -m dualspeech.bin.train [args...]"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/parse_options.sh"
[ $# -gt 0 ] || { echo "$help_message" >&2; exit 1; }

die() { echo "launch.sh: $*" >&2; exit 1; }
[[ "$num_nodes" =~ ^[1-9][0-9]*$ ]] || die "--num-nodes must be a positive integer, got '$num_nodes'"
[[ "$gpus_per_node" =~ ^[0-9]+$ ]] || die "--gpus-per-node must be an integer >= 0, got '$gpus_per_node'"
case $launcher in accelerate|torchrun) ;; *) die "--launcher must be accelerate or torchrun, got '$launcher'" ;; esac
[ -z "$config_file" ] || [ -f "$config_file" ] || die "--config-file $config_file does not exist"
[ "$num_nodes" -eq 1 ] || [ "$gpus_per_node" -gt 0 ] \
  || die "--num-nodes $num_nodes needs GPUs: set --gpus-per-node (the recipe's --ngpu)"

show() { printf '%q ' "$@" | sed 's/ $//'; }
run() {  # run a command in place of this script, or print it and stop
  if [ "$print" = true ]; then show "$@"; echo; exit 0; fi
  exec "$@"
}

procs=$(( gpus_per_node > 0 ? gpus_per_node : 1 ))
launcher_cmd() {  # the launcher of one node: launcher_cmd RANK MASTER_ADDR
  local rank=$1 addr=$2 cmd
  if [ "$launcher" = torchrun ]; then
    cmd=(torchrun --nnodes "$num_nodes" --nproc_per_node "$procs")
    if [ "$num_nodes" -gt 1 ]; then
      cmd+=(--rdzv_backend c10d --rdzv_endpoint "$addr:$port" --rdzv_id "${SLURM_JOB_ID:-dualspeech}")
    else
      cmd+=(--standalone)   # a free local port: two jobs on one machine do not collide
    fi
  else
    cmd=(accelerate launch)
    if [ -n "$config_file" ]; then cmd+=(--config_file "$config_file")
    elif [ $(( num_nodes * procs )) -gt 1 ]; then cmd+=(--multi_gpu); fi
    cmd+=(--num_processes $(( num_nodes * procs )) --num_machines "$num_nodes")
    if [ "$num_nodes" -gt 1 ]; then
      cmd+=(--machine_rank "$rank" --main_process_ip "$addr" --main_process_port "$port")
    fi
  fi
  printf '%s\n' "${cmd[@]}"
}

if [ "$num_nodes" -eq 1 ]; then
  if [ "$gpus_per_node" -le 1 ] && [ -z "$config_file" ] && [ "$launcher" = accelerate ]; then
    run "$python" "$@"
  fi
  mapfile -t cmd < <(launcher_cmd 0 "")
  run "${cmd[@]}" "$@"
fi

[ -n "$port" ] || port=$(( 29500 + ${SLURM_JOB_ID:-0} % 1000 ))
if [ "$node_task" = true ]; then   # one node's launcher, inside srun
  [ -n "${SLURM_NODEID:-}" ] || die "--node-task true runs inside srun (SLURM_NODEID is not set)"
  mapfile -t cmd < <(launcher_cmd "$SLURM_NODEID" "$DS_MASTER_ADDR")
  run "${cmd[@]}" "$@"
fi

[ -n "${SLURM_JOB_NODELIST:-}" ] || die "--num-nodes $num_nodes runs inside a Slurm allocation of $num_nodes nodes (sbatch/salloc --nodes $num_nodes; the pipeline's Slurm backend asks for it): SLURM_JOB_NODELIST is not set"
mapfile -t hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
# SLURM_NODEID counts the nodes of the whole allocation: ranks are 0..M-1 only when it has M nodes
[ "${#hosts[@]}" -eq "$num_nodes" ] \
  || die "--num-nodes $num_nodes but the allocation has ${#hosts[@]} node(s): ${hosts[*]:-none} (allocate exactly $num_nodes)"
export DS_MASTER_ADDR=${hosts[0]}
task=("$here/launch.sh" --node-task true --num-nodes "$num_nodes" --gpus-per-node "$gpus_per_node"
      --launcher "$launcher" --port "$port" --python "$python" --print "$print")
[ -z "$config_file" ] || task+=(--config-file "$config_file")
srun_cmd=(srun --nodes "$num_nodes" --ntasks "$num_nodes" --ntasks-per-node 1 --kill-on-bad-exit=1)
# srun no longer inherits the job's --cpus-per-task (Slurm >= 22.05): without it each node's
# launcher, its GPU processes and their data workers would share one CPU
[ -z "${SLURM_CPUS_PER_TASK:-}" ] || srun_cmd+=(--cpus-per-task "$SLURM_CPUS_PER_TASK")
srun_cmd+=("${task[@]}" -- "$@")
if [ "$print" = true ]; then       # the srun line, then what the task of each node runs
  echo "DS_MASTER_ADDR=$DS_MASTER_ADDR $(show "${srun_cmd[@]}")"
  for ((k = 0; k < num_nodes; k++)); do SLURM_NODEID=$k "${task[@]}" -- "$@"; done
  exit 0
fi
exec "${srun_cmd[@]}"
