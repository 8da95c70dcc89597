# Command-line options for recipe scripts, Kaldi-compatible. Source it AFTER declaring options:
#
#   stage=0        # first stage to run
#   use_gpu=false  # booleans take true/false
#   . utils/parse_options.sh
#
# `--foo-bar VALUE`, `--foo_bar VALUE` and `--foo-bar=VALUE` set the already-declared variable
# foo_bar (an undeclared name is an error that names the option). A boolean option (current value
# true or false) only accepts true/false; given as the last argument or followed by another
# --option it means true (`--force`). `--config FILE` sources FILE (shell assignments) unless the
# script declares its own `config` variable. `--help`/`-h` prints $help_message (when set) and the
# option block of the calling script (`name=default  # comment` lines before the source line),
# then exits 0. Parsing stops at the first argument that is not an option, or after `--`; the
# rest stays in "$@". The command line as given is kept in $ds_command_line.

_po_script=${BASH_SOURCE[1]:-$0}
ds_command_line="$(printf '%q ' "$0" "$@")"
ds_command_line=${ds_command_line% }

_po_help() {
  local name default comment line
  [ -n "${help_message:-}" ] && printf '%s\n\n' "$help_message"
  echo "Options (default value in brackets):"
  while IFS= read -r line; do
    case "$line" in
      *parse_options.sh*) break ;;
    esac
    [[ "$line" =~ ^([a-z_][a-z0-9_]*)=([^#]*)(#[[:space:]]*(.*))?$ ]] || continue
    [ "${BASH_REMATCH[1]}" = help_message ] && continue
    name=${BASH_REMATCH[1]//_/-}
    default=${BASH_REMATCH[2]%"${BASH_REMATCH[2]##*[![:space:]]}"}
    comment=${BASH_REMATCH[4]:-}
    printf '  --%-22s %-28s %s\n' "$name" "[$default]" "$comment"
  done < "$_po_script"
}

_po_die() { echo "$(basename "$_po_script"): $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) _po_help; exit 0 ;;
    --) shift; break ;;
    --*=*) _po_opt=${1%%=*}; _po_val=${1#*=}; _po_n=1 ;;
    --?*) _po_opt=$1; _po_val=${2-}; _po_n=2; [ $# -ge 2 ] || _po_n=1 ;;
    *) break ;;
  esac
  _po_name=${_po_opt#--}
  _po_name=${_po_name//-/_}
  if [ "$_po_name" = config ] && ! declare -p "config" >/dev/null 2>&1; then   # no option named config: a file of options
    [ "$_po_n" -eq 2 ] || _po_die "option --config needs a file"
    [ -r "$_po_val" ] || _po_die "--config: cannot read '$_po_val'"
    # shellcheck source=/dev/null   # the user's --config file
    . "$_po_val"
    shift 2
    continue
  fi
  [[ "$_po_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || _po_die "invalid option name '$_po_opt'"
  if ! declare -p "$_po_name" >/dev/null 2>&1; then
    _po_die "unknown option '$_po_opt' (no variable '$_po_name' is declared; see --help)"
  fi
  _po_old=${!_po_name-}
  if [ "$_po_old" = true ] || [ "$_po_old" = false ]; then
    if [ "$_po_n" -eq 2 ] && [[ "$_po_val" == --* ]]; then
      _po_val=true; _po_n=1                  # bare flag followed by another option
    elif [ "$_po_n" -eq 1 ] && [[ "$1" != *=* ]]; then
      _po_val=true                           # bare flag as the last argument
    fi
    [ "$_po_val" = true ] || [ "$_po_val" = false ] \
      || _po_die "option $_po_opt is boolean: expected true or false, got '$_po_val'"
  elif [ "$_po_n" -eq 1 ] && [[ "$1" != *=* ]]; then
    _po_die "option $_po_opt needs a value"
  fi
  printf -v "$_po_name" '%s' "$_po_val"
  shift "$_po_n"
done
unset _po_opt _po_val _po_n _po_name _po_old
true
