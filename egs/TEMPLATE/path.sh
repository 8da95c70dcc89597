# Environment for recipe scripts; sourced by run.sh from egs/<recipe>/.
# Uses the repository's .venv (made by `make install`) when it exists, else whatever `python`
# is on PATH (a user-managed environment with dualspeech installed).
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
export MAIN_ROOT
[ -d "$MAIN_ROOT/.venv/bin" ] && export PATH="$MAIN_ROOT/.venv/bin:$PATH"
export PYTHONPATH="$MAIN_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export LC_ALL=C.UTF-8
# The user's command line, kept in exp/ by the pipeline (run.sh sources this file with its args).
DS_RUN_COMMAND=$(printf '%q ' "$0" "$@")
export DS_RUN_COMMAND=${DS_RUN_COMMAND% }
