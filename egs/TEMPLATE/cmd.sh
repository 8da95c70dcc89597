# How jobs are launched; sourced by run.sh. Every command the pipeline runs goes through
# utils/run_jobs.sh (see its header): local processes by default, Slurm arrays on a cluster.
#
#   cpu_cmd   data preparation and CPU extraction shards
#   gpu_cmd   token extraction, training and decoding when --ngpu > 0
#
# Slurm: set DS_BACKEND=slurm in the environment, or edit the lines below, e.g.
#   cpu_cmd="utils/run_jobs.sh --backend slurm --mem 8G --time 12:00:00 --slurm-opts --partition=cpu"
#   gpu_cmd="utils/run_jobs.sh --backend slurm --gpu 1 --cpus 8 --mem 64G --slurm-opts --partition=gpu"
# The variables are split on spaces, so pass several sbatch options through the environment:
#   DS_SLURM_OPTS="--partition=gpu --qos=high" ./run.sh ...
# Multi-GPU training runs as ONE job that asks for --gpu N (GPUs per node) and, with --num-nodes
# M > 1, --nodes M (one task per node): utils/launch.sh inside it starts accelerate launch on
# every node with one srun (docs/training.md, "Multi-node (Slurm)"). The GPU line then needs
# whole nodes, e.g. --gpu 4 --cpus 32 --mem 0 (all of a node's memory).
cpu_cmd=${cpu_cmd:-utils/run_jobs.sh}
gpu_cmd=${gpu_cmd:-utils/run_jobs.sh}
