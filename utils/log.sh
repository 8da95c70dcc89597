# Logging for recipe scripts: `. utils/log.sh`, then
#   log "message"     -> stderr: 2026-11-23T12:00:00 (run.sh:42:main) message
#   die "message"     -> the same line with ERROR, then exit 1
# The location is the script line that called log/die (and its function when inside one);
# calls from the helper library utils/stage.sh report the recipe line that called the helper.

_log_line() {  # _log_line LEVEL MESSAGE...
  local level=$1 i=2 where
  shift
  while [[ "${BASH_SOURCE[$i]:-}" == */utils/stage.sh ]]; do i=$((i + 1)); done
  where="${BASH_SOURCE[$i]##*/}:${BASH_LINENO[$((i - 1))]}"
  [ "${FUNCNAME[$i]:-main}" != main ] && [ "${FUNCNAME[$i]:-}" != source ] && where+=":${FUNCNAME[$i]}"
  printf '%s (%s) %s%s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "$where" "$level" "$*" >&2
}

log() { _log_line "" "$@"; }

die() { _log_line "ERROR: " "$@"; exit 1; }
