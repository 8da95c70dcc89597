#!/usr/bin/env bash
# Run a command as N shard jobs, locally or as a Slurm array (Kaldi run.pl / slurm.pl style).
#
#   utils/run_jobs.sh [options] JOB=1:4 exp/log/extract.JOB.log python -m x --shard JOB/4
#   utils/run_jobs.sh [options] exp/log/train.log python -m y        # a single job
#
# Every argument has the placeholder (JOB, or whatever name the range uses) replaced by the job
# index. One argument after the log is run with `bash -c` (pipes allowed); several are quoted.
# Each job writes its own log: the command, start time, output, and a last line
# "# Ended (code N) at DATE, elapsed time S seconds". A job that succeeded leaves a marker next
# to its log holding a hash of its command and $DS_STAGE_HASH (set by utils/stage.sh); a re-run
# skips jobs whose marker matches, so a killed stage continues where it stopped. When any job
# fails, the failing command and the tail of its log are printed and the exit status is 1.
#
# --backend slurm writes <logdir>/q/<name>.sbatch (an array job with one task per pending job,
# each running this script locally for its index) and submits it with `sbatch --wait`. With
# --nodes N > 1 each job gets N nodes (one task each) and runs on the first of them; the command
# spreads itself over the others (utils/launch.sh: one srun of the launcher per job).
set -uo pipefail

backend=${DS_BACKEND:-local}  # local | slurm
max_jobs_run=0                # local: jobs at once (0 = all); slurm: array throttle %N
gpu=0                         # GPUs per job (slurm: --gres=gpu:N; local: round robin over the machine's GPUs)
nodes=1                       # slurm: nodes per job (--nodes N, one task per node); the command starts
                              # its own srun across them (utils/launch.sh); GPUs are --gpu per node
cpus=0                        # CPUs per job (slurm: --cpus-per-task; 0 = cluster default)
mem=""                        # memory per job (slurm: --mem, e.g. 16G)
time=""                       # slurm: --time, e.g. 24:00:00
slurm_opts=${DS_SLURM_OPTS:-} # extra sbatch options, e.g. "--partition=gpu --account=x"
dry_run=false                 # slurm: write the sbatch script and print its path, do not submit
resume=true                   # skip jobs whose success marker matches their command
tail_lines=20                 # log lines printed for a failed job
help_message="Usage: utils/run_jobs.sh [options] [VAR=START:END] <log> <command> [args...]"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/parse_options.sh"

[ $# -ge 2 ] || { echo "$help_message" >&2; exit 1; }
[[ "$nodes" =~ ^[1-9][0-9]*$ ]] || { echo "run_jobs.sh: --nodes must be a positive integer, got '$nodes'" >&2; exit 1; }
var=""; first=1; last=1
if [[ "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=${BASH_REMATCH[3]}
  shift
  [ "$last" -ge "$first" ] || { echo "run_jobs.sh: bad job range $var=$first:$last" >&2; exit 1; }
  [ $# -ge 2 ] || { echo "$help_message" >&2; exit 1; }
elif [[ "$1" =~ ^[A-Za-z_]+=.*:.*$ ]]; then
  echo "run_jobs.sh: job range must look like JOB=1:4, got '$1'" >&2; exit 1
fi
log_template=$1; shift
[ -z "$var" ] || [[ "$log_template" == *"$var"* ]] \
  || { echo "run_jobs.sh: log name '$log_template' must contain $var so each job gets its own log" >&2; exit 1; }

subst() { if [ -n "$var" ]; then printf '%s' "${1//$var/$2}"; else printf '%s' "$1"; fi; }

job_cmd() {  # the command line of job $1
  local a out=()
  if [ ${#cmd_args[@]} -eq 1 ]; then subst "${cmd_args[0]}" "$1"; return; fi
  for a in "${cmd_args[@]}"; do out+=("$(subst "$a" "$1")"); done
  printf '%q ' "${out[@]}"
}
cmd_args=("$@")

marker_of() { local log; log=$(subst "$log_template" "$1"); echo "$(dirname "$log")/.$(basename "$log").done"; }
key_of() { printf '%s\n%s\n' "$(job_cmd "$1")" "${DS_STAGE_HASH:-}" | sha256sum | cut -d' ' -f1; }
is_done() { local m; m=$(marker_of "$1"); [ "$resume" = true ] && [ -f "$m" ] && [ "$(cat "$m")" = "$(key_of "$1")" ]; }

# Local jobs that ask for --gpu N get N of the machine's GPUs each, round robin by job index
# (the machine's count: $DS_NUM_GPUS, else nvidia-smi), unless CUDA_VISIBLE_DEVICES is already set.
num_gpus=0
if [ "$gpu" -gt 0 ] && [ -z "${CUDA_VISIBLE_DEVICES+set}" ]; then
  num_gpus=${DS_NUM_GPUS:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)}
fi
gpus_of() {  # the CUDA_VISIBLE_DEVICES value of job $1
  local k ids=()
  for ((k = 0; k < gpu; k++)); do ids+=($(( (($1 - first) * gpu + k) % num_gpus ))); done
  (IFS=,; printf '%s' "${ids[*]}")
}

# shellcheck disable=SC2329   # called from run_one's TERM trap (a string shellcheck does not read)
tree_of() {  # pid $1 and every process below it
  local c; echo "$1"
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree_of "$c"; done
}

run_one() {  # run job $1 in the foreground of this subshell, log header/footer, marker on success
  local j=$1 log cmd start rc child marker
  log=$(subst "$log_template" "$j"); cmd=$(job_cmd "$j"); marker=$(marker_of "$j")
  mkdir -p "$(dirname "$log")"
  rm -f "$marker"
  { echo "# $cmd"; echo "# Started at $(date) on $(hostname)"; } > "$log"
  start=$(date +%s)
  # In the caller's process group (a SIGKILL of the recipe's group reaches every job; the
  # extractors also die with this shell: dualspeech/utils/procs.py); a TERM stops the job's tree.
  local devices=()
  [ "$num_gpus" -gt 0 ] && devices=("CUDA_VISIBLE_DEVICES=$(gpus_of "$j")")
  env DS_JOB_ID="$j" ${devices[@]+"${devices[@]}"} bash -c "$cmd" >> "$log" 2>&1 < /dev/null &
  child=$!
  trap 'kill -TERM $(tree_of $child) 2>/dev/null; wait $child; echo "# Killed at $(date)" >> "$log"; exit 143' TERM INT
  wait $child; rc=$?
  trap - TERM INT
  echo "# Ended (code $rc) at $(date), elapsed time $(( $(date +%s) - start )) seconds" >> "$log"
  if [ $rc -eq 0 ]; then
    key_of "$j" > "$marker.tmp" && mv "$marker.tmp" "$marker"
  fi
  return $rc
}

report_failures() {  # print every failed job's command and log tail; return 1 when any failed
  local j log failed=0
  for ((j = first; j <= last; j++)); do
    is_done "$j" && continue
    failed=$((failed + 1))
    log=$(subst "$log_template" "$j")
    {
      echo "run_jobs.sh: job $j of $first..$last failed: $(job_cmd "$j")"
      if [ -f "$log" ]; then
        echo "---- last $tail_lines lines of $log ----"
        tail -n "$tail_lines" "$log"
        echo "----"
      else
        echo "(no log at $log: the job never started)"
      fi
    } >&2
  done
  [ $failed -eq 0 ] || { echo "run_jobs.sh: $failed of $((last - first + 1)) jobs failed" >&2; return 1; }
}

pending=()
for ((j = first; j <= last; j++)); do
  if [ "$resume" = true ] && is_done "$j"; then continue; fi
  pending+=("$j")
done
total=$((last - first + 1))
if [ ${#pending[@]} -lt "$total" ]; then
  echo "run_jobs.sh: $((total - ${#pending[@]})) of $total jobs already done ($(subst "$log_template" '*')), running ${#pending[@]}" >&2
fi
[ ${#pending[@]} -eq 0 ] && exit 0
[ "$resume" = true ] || resume=true   # from here on "done" means "succeeded in this run"

case "$backend" in
  local)
    pids=()
    # Parallel jobs share the CPU: unless the caller chose, give each job its share of threads.
    if [ -z "${OMP_NUM_THREADS:-}" ] && [ ${#pending[@]} -gt 1 ]; then
      at_once=${#pending[@]}; [ "$max_jobs_run" -gt 0 ] && [ "$max_jobs_run" -lt "$at_once" ] && at_once=$max_jobs_run
      threads=$(( $(nproc) / at_once )); export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
    fi
    trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait; exit 143' TERM INT
    for j in "${pending[@]}"; do
      if [ "$max_jobs_run" -gt 0 ] && [ "$(jobs -rp | wc -l)" -ge "$max_jobs_run" ]; then
        wait -n
      fi
      run_one "$j" &
      pids+=($!)
    done
    wait
    trap - TERM INT
    report_failures
    exit $?
    ;;
  slurm)
    logdir=$(dirname "$(subst "$log_template" 1)")
    name=$(basename "$log_template" .log); [ -n "$var" ] && name=${name//$var/}
    name=${name//../.}; name=${name%.}
    script="$logdir/q/$name.sbatch"
    mkdir -p "$logdir/q"
    array=$(IFS=,; echo "${pending[*]}")
    [ "$max_jobs_run" -gt 0 ] && array+="%$max_jobs_run"
    {
      echo "#!/usr/bin/env bash"
      echo "#SBATCH --job-name=$name"
      echo "#SBATCH --array=$array"
      echo "#SBATCH --output=$logdir/q/$name.%a.out"
      [ "$gpu" -gt 0 ] && echo "#SBATCH --gres=gpu:$gpu"
      [ "$nodes" -gt 1 ] && printf '#SBATCH --nodes=%s\n#SBATCH --ntasks-per-node=1\n' "$nodes"
      [ "$cpus" -gt 0 ] && echo "#SBATCH --cpus-per-task=$cpus"
      [ -n "$mem" ] && echo "#SBATCH --mem=$mem"
      [ -n "$time" ] && echo "#SBATCH --time=$time"
      for o in $slurm_opts; do echo "#SBATCH $o"; done
      echo "# Written by utils/run_jobs.sh: each array task runs one job locally."
      echo "cd $(printf '%q' "$PWD")"
      echo "export DS_STAGE_HASH=$(printf '%q' "${DS_STAGE_HASH:-}")"
      printf 'exec %q --backend local --tail-lines %q ' "$here/run_jobs.sh" "$tail_lines"
      [ -n "$var" ] && printf '"%s=%s:%s" ' "$var" "\${SLURM_ARRAY_TASK_ID}" "\${SLURM_ARRAY_TASK_ID}"
      printf '%q ' "$log_template"
      printf '%q ' "${cmd_args[@]}"
      echo
    } > "$script.tmp" && mv "$script.tmp" "$script"
    if [ "$dry_run" = true ]; then echo "$script"; exit 0; fi
    command -v sbatch > /dev/null || { echo "run_jobs.sh: --backend slurm needs sbatch on PATH (or use --backend local, or --dry-run true to only write $script)" >&2; exit 1; }
    sbatch --wait "$script" >&2
    report_failures
    exit $?
    ;;
  *) echo "run_jobs.sh: unknown --backend '$backend' (expected local or slurm)" >&2; exit 1 ;;
esac
