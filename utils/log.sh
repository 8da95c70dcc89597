# Logging for recipe scripts: `. utils/log.sh`, then
#   log "message"     -> stderr: 2026-11-23T12:00:00 (run.sh:42:main) message
#   die "message"     -> the same line with ERROR, then exit 1
# The location is the script and line that called log/die (function name when inside one).

log() {
  local where="${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}"
  [ "${FUNCNAME[1]:-main}" != main ] && where+=":${FUNCNAME[1]}"
  printf '%s (%s) %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "$where" "$*" >&2
}

die() {
  local where="${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}"
  [ "${FUNCNAME[1]:-main}" != main ] && where+=":${FUNCNAME[1]}"
  printf '%s (%s) ERROR: %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "$where" "$*" >&2
  exit 1
}
