# Stage skipping by content hash. Source it (after utils/log.sh), then wrap each stage:
#
#   if stage_begin 3 ustokens --inputs conf/x.yaml data/cuts --args "$nj $tag" --clean dump/ust; then
#     ...work...
#     stage_end 3 ustokens data/ust_cuts         # files/dirs the stage produced
#   fi
#
# The stage hash covers the CONTENT of every input file (sha256), the file list with sizes and
# modification times of every input directory (corpora are too big to read twice; a rewritten
# file changes its time), and the --args string. stage_begin
# returns 1 (skip) when the marker $stage_dir/stage<N>_<name>.done holds the same hash and the
# outputs it recorded are unchanged (same file list and sizes under every output path); otherwise it exports DS_STAGE_HASH
# (utils/run_jobs.sh keys its per-job markers on it, so a killed stage re-runs only unfinished
# jobs) and returns 0. --clean paths are deleted first when the previous attempt had other inputs
# or $force is true; a resumed attempt with the same hash keeps them. $force=true always re-runs.

stage_dir=${stage_dir:-exp/stages}
force=${force:-false}

_stage_hash_inputs() {  # print one line per input describing its content
  local p
  for p in "$@"; do
    if [ -f "$p" ]; then
      printf 'file %s %s\n' "$p" "$(sha256sum < "$p" | cut -d' ' -f1)"
    elif [ -d "$p" ]; then
      printf 'dir %s %s\n' "$p" "$(cd "$p" && find -L . -type f ! -name '.*' -printf '%P %s %T@\n' | LC_ALL=C sort | sha256sum | cut -d' ' -f1)"
    else
      die "stage input '$p' does not exist (did an earlier stage run? see --stage)"
    fi
  done
}

_stage_outputs() {  # print "size path" for every file under the given outputs
  local p
  for p in "$@"; do
    if [ -d "$p" ]; then
      find -L "$p" -type f ! -name '.*' -printf '%s %p\n' | LC_ALL=C sort -k2
    elif [ -f "$p" ]; then
      printf '%s %s\n' "$(stat -L -c %s "$p")" "$p"
    else
      echo "the stage finished but its output '$p' is missing" >&2; return 1
    fi
  done
}

_stage_outputs_intact() {  # the outputs recorded in marker $1 are unchanged (same files, sizes)
  local paths=() p listing
  while IFS= read -r p; do paths+=("$p"); done < <(sed -n 's/^output //p' "$1")
  [ ${#paths[@]} -gt 0 ] || return 1
  listing=$(_stage_outputs "${paths[@]}" 2>/dev/null) || return 1
  [ "$(printf '%s\n' "$listing" | sha256sum | cut -d' ' -f1)" \
    = "$(sed -n 's/^outputs_sha //p' "$1")" ]
}

stage_begin() {  # stage_begin N NAME [--inputs P...] [--args STR] [--clean P...]
  local n=$1 name=$2 mode="" args="" inputs=() clean=() hash marker started
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --inputs) mode=inputs ;;
      --clean) mode=clean ;;
      --args) args=$2; shift ;;
      *) case "$mode" in
           inputs) inputs+=("$1") ;;
           clean) clean+=("$1") ;;
           *) die "stage_begin: unexpected argument '$1'" ;;
         esac ;;
    esac
    shift
  done
  hash=$({ _stage_hash_inputs "${inputs[@]}" || exit 1; printf 'args %s\n' "$args"; } | sha256sum | cut -d' ' -f1) \
    || exit 1
  marker="$stage_dir/stage${n}_${name}.done"
  started="$stage_dir/stage${n}_${name}.started"
  mkdir -p "$stage_dir"
  if [ "$force" != true ] && [ -f "$marker" ] && [ "$(sed -n 's/^hash //p' "$marker")" = "$hash" ] \
     && _stage_outputs_intact "$marker"; then
    log "stage $n ($name): up to date (inputs unchanged, outputs complete), skipping; --force true re-runs it"
    return 1
  fi
  rm -f "$marker"
  if [ "$force" = true ] || [ ! -f "$started" ] || [ "$(cat "$started")" != "$hash" ]; then
    [ ${#clean[@]} -gt 0 ] && rm -rf "${clean[@]}"
    [ "$force" = true ] && hash="$hash-force-$(date +%s%N)"
  else
    log "stage $n ($name): resuming an unfinished attempt with the same inputs"
  fi
  printf '%s\n' "$hash" > "$started"
  export DS_STAGE_HASH=$hash
  log "stage $n ($name): running"
  return 0
}

stage_end() {  # stage_end N NAME OUTPUT...: record the hash and the outputs
  local n=$1 name=$2 marker listing
  shift 2
  marker="$stage_dir/stage${n}_${name}.done"
  [ $# -gt 0 ] || die "stage_end $n $name: name the outputs of the stage"
  listing=$(_stage_outputs "$@") || die "stage $n ($name) did not produce all its outputs"
  {
    printf 'hash %s\n' "${DS_STAGE_HASH%%-force-*}"
    printf 'date %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')"
    printf 'command %s\n' "${ds_command_line:-}"
    printf 'output %s\n' "$@"
    printf 'outputs_sha %s\n' "$(printf '%s\n' "$listing" | sha256sum | cut -d' ' -f1)"
  } > "$marker.tmp" || { rm -f "$marker.tmp"; exit 1; }
  mv "$marker.tmp" "$marker"
  rm -f "$stage_dir/stage${n}_${name}.started"
  log "stage $n ($name): done"
}
