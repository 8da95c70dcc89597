# Stage skipping by content hash. Source it (after utils/log.sh), then wrap each stage:
#
#   if stage_begin 3 ustokens --inputs conf/x.yaml data/cuts --args "$nj $tag" --clean dump/ust; then
#     ...work...
#     stage_end 3 ustokens data/ust_cuts         # files/dirs the stage produced
#   fi
#
# The stage hash covers the CONTENT of every input file (sha256), the file list with sizes and
# modification times of every input directory (corpora are too big to read twice; a rewritten
# file changes its time), and the --args string. stage_begin returns 1 (skip) when the marker
# $stage_dir/stage<N>_<name>.done holds the same hash and the outputs it recorded are unchanged:
# stage<N>_<name>.outputs lists size, time and sha256 of every output file, and a file whose
# size differs, or whose time differs and content too, is a change (a replaced checkpoint of the
# same size is seen; a touched one is not). Otherwise it exports DS_STAGE_HASH (utils/run_jobs.sh
# keys its per-job markers on it) and DS_STAGE_FRESH, and returns 0, in one of three ways:
#   resume  an unfinished attempt with the same hash (killed): finished jobs are kept;
#   repair  the same inputs, but outputs went missing or changed since the stage finished: the
#           changed files are logged, nothing is deleted, every job runs again (new job keys) and
#           rebuilds what is missing (the tools skip their valid outputs);
#   fresh   other inputs than the last attempt, or $force=true (DS_STAGE_FRESH=true): --clean
#           paths are deleted, --move-aside paths (experiment dirs: checkpoints a trainer would
#           resume) are renamed to <path>.stale-<time> and logged, so nothing made from other
#           inputs is reused and nothing trained is lost.
# stage_end also records the attempt's wall time (`seconds` in the marker); stage_table prints
# every finished stage's time and the total (the pipeline does at its end).

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

_stage_files() {  # print "size mtime path" for every file under the given outputs
  local p
  for p in "$@"; do
    [ -e "$p" ] || { echo "the stage finished but its output '$p' is missing" >&2; return 1; }
    find -L "$p" -type f ! -name '.*' -printf '%s %T@ %p\n' | LC_ALL=C sort -k3
  done
}

_stage_listing() {  # print "size mtime sha256 path" for every file under the given outputs
  local size mtime path
  _stage_files "$@" | while IFS=' ' read -r size mtime path; do
    printf '%s %s %s %s\n' "$size" "$mtime" "$(sha256sum < "$path" | cut -c1-64)" "$path"
  done
  [ "${PIPESTATUS[0]}" -eq 0 ]
}

_stage_outputs_intact() {  # the outputs recorded in marker $1 are unchanged (same files, sizes, content)
  local listing="${1%.done}.outputs" paths=() p now
  while IFS= read -r p; do paths+=("$p"); done < <(sed -n 's/^output //p' "$1")
  [ ${#paths[@]} -gt 0 ] || return 1
  if [ ! -f "$listing" ]; then        # a marker from before content listings: sizes only
    now=$(_stage_outputs "${paths[@]}" 2>/dev/null) || return 1
    [ "$(printf '%s\n' "$now" | sha256sum | cut -d' ' -f1)" = "$(sed -n 's/^outputs_sha //p' "$1")" ]
    return
  fi
  now=$(_stage_files "${paths[@]}" 2>/dev/null) || return 1
  [ "$(cut -d' ' -f1,4- "$listing")" = "$(printf '%s\n' "$now" | cut -d' ' -f1,3-)" ] || return 1
  # a file whose time changed must still hold what was recorded (its content hash): a replaced
  # checkpoint of the same size is seen, a touched or copied one is not re-run
  paste -d' ' <(cut -d' ' -f2,3 "$listing") <(printf '%s\n' "$now" | cut -d' ' -f2-) \
    | while IFS=' ' read -r old_time sha new_time p; do
        [ "$old_time" = "$new_time" ] || [ "$(sha256sum < "$p" | cut -c1-64)" = "$sha" ] || exit 1
      done
}

stage_begin() {  # stage_begin N NAME [--inputs P...] [--args STR] [--clean P...] [--move-aside P...]
  local n=$1 name=$2 mode="" args="" inputs=() clean=() aside=() hash marker started prev="" p
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --inputs) mode=inputs ;;
      --clean) mode=clean ;;
      --move-aside) mode=aside ;;
      --args) args=$2; shift ;;
      *) case "$mode" in
           inputs) inputs+=("$1") ;;
           clean) clean+=("$1") ;;
           aside) aside+=("$1") ;;
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
  [ -f "$marker" ] && prev=$(sed -n 's/^hash //p' "$marker")
  if [ "$force" != true ] && [ "$prev" = "$hash" ] && _stage_outputs_intact "$marker"; then
    log "stage $n ($name): up to date (inputs unchanged, outputs complete), skipping; --force true re-runs it"
    return 1
  fi
  DS_STAGE_FRESH=false
  if [ "$force" != true ] && [ -f "$started" ] && [ "$(cut -d- -f1 "$started")" = "$hash" ]; then
    hash=$(cat "$started")            # the attempt's job markers stay valid: finished jobs are kept
    log "stage $n ($name): resuming an unfinished attempt with the same inputs"
  elif [ "$force" != true ] && [ "$prev" = "$hash" ]; then
    # Same inputs, damaged outputs: every job runs again (new job keys) and rebuilds only what
    # is missing or invalid; nothing is deleted first.
    log "stage $n ($name): inputs unchanged but outputs changed since it finished:$(_stage_outputs_diff "$marker")
  re-running its jobs to rebuild what is missing; good outputs are kept (--force true redoes everything)"
    hash="$hash-repair-$(date +%s%N)"
  else
    DS_STAGE_FRESH=true               # other inputs (or --force): nothing of the old attempt is reused
    [ ${#clean[@]} -gt 0 ] && rm -rf "${clean[@]}"
    for p in ${aside[@]+"${aside[@]}"}; do _stage_move_aside "$n" "$name" "$p"; done
    [ "$force" = true ] && hash="$hash-force-$(date +%s%N)"
  fi
  rm -f "$marker"
  printf '%s\n' "$hash" > "$started"
  export DS_STAGE_HASH=$hash DS_STAGE_FRESH
  _stage_started_at=$(date +%s.%N)
  log "stage $n ($name): running"
  return 0
}

_stage_move_aside() {  # _stage_move_aside N NAME PATH: keep PATH (made from other inputs) as PATH.stale-<time>
  local n=$1 name=$2 p=$3 dest
  [ -e "$3" ] || return 0
  dest="$p.stale-$(date '+%Y%m%d-%H%M%S')"
  while [ -e "$dest" ]; do dest="$dest.1"; done
  mv "$p" "$dest" || die "stage $n ($name): could not move $p aside to $dest"
  log "stage $n ($name): $p was made from other inputs (or --force): moved to $dest; this run starts from scratch"
}

_stage_outputs_diff() {  # the outputs recorded by marker $1 that are now missing or changed (a few lines)
  local listing="${1%.done}.outputs" out outputs
  [ -f "$listing" ] || return 0
  mapfile -t outputs < <(sed -n 's/^output //p' "$1")
  out=$(diff <(cut -d' ' -f1,4- "$listing") \
          <(_stage_files ${outputs[@]+"${outputs[@]}"} 2>/dev/null | cut -d' ' -f1,3-) \
        | sed -n 's/^< \([0-9]*\) \(.*\)/    was \1 bytes: \2/p; s/^> \([0-9]*\) \(.*\)/    now \1 bytes: \2/p' | head -n 8)
  printf '\n%s' "${out:-    (same files and sizes, other content)}"
}

stage_end() {  # stage_end N NAME OUTPUT...: record the hash and the outputs
  local n=$1 name=$2 marker listing
  shift 2
  marker="$stage_dir/stage${n}_${name}.done"
  [ $# -gt 0 ] || die "stage_end $n $name: name the outputs of the stage"
  listing=$(_stage_outputs "$@") || die "stage $n ($name) did not produce all its outputs"
  {
    printf 'hash %s\n' "${DS_STAGE_HASH%%-*}"
    printf 'date %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')"
    printf 'seconds %s\n' "$(awk -v a="${_stage_started_at:-}" -v b="$(date +%s.%N)" \
                             'BEGIN { if (a == "") print "-"; else printf "%.1f\n", b - a }')"
    printf 'command %s\n' "${ds_command_line:-}"
    printf 'output %s\n' "$@"
    printf 'outputs_sha %s\n' "$(printf '%s\n' "$listing" | sha256sum | cut -d' ' -f1)"
  } > "$marker.tmp" || { rm -f "$marker.tmp"; exit 1; }
  _stage_listing "$@" > "${marker%.done}.outputs.tmp" || { rm -f "$marker.tmp"; exit 1; }
  mv "${marker%.done}.outputs.tmp" "${marker%.done}.outputs"
  mv "$marker.tmp" "$marker"
  rm -f "$stage_dir/stage${n}_${name}.started"
  _stages_ran+=("stage${n}_${name}")
  log "stage $n ($name): done"
}

stage_table() {  # print every finished stage's wall time (from its marker) and the total
  local m n base secs ran total=0
  printf '%-7s %-14s %9s  %s\n' stage name seconds "this run"
  while read -r _ _ m; do
    base=$(basename "$m" .done)
    secs=$(sed -n 's/^seconds //p' "$m"); secs=${secs:--}
    ran=skipped; [[ " ${_stages_ran[*]:-} " == *" $base "* ]] && ran=ran
    printf '%-7s %-14s %9s  %s\n' "${base%%_*}" "${base#*_}" "$secs" "$ran"
    [ "$secs" = - ] || total=$(awk -v t="$total" -v s="$secs" 'BEGIN { printf "%.1f", t + s }')
  done < <(for m in "$stage_dir"/stage*.done; do       # in stage order, then in the order run
             [ -f "$m" ] || continue
             n=$(basename "$m"); n=${n#stage}; n=${n%%_*}
             printf '%s %s %s\n' "$n" "$(sed -n 's/^date //p' "$m")" "$m"
           done | LC_ALL=C sort -k1,1n -k2,2)
  printf '%-7s %-14s %9s  (%s min)\n' total "" "$total" "$(awk -v t="$total" 'BEGIN { printf "%.1f", t / 60 }')"
}
