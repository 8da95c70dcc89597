#!/usr/bin/env bash
# Creates the project's virtualenv (.venv, ignored by git) and installs everything the package,
# the recipes and the tests need, offline-first weights included. Idempotent: a stamp file
# records the hash of the requirement files, so a second run returns in about a second.
#
#   tools/install.sh            CPU environment (torch 2.13.0 CPU build)
#   TORCH_SPEC="torch==2.13.0" TORCH_INDEX=<your CUDA wheel index> tools/install.sh
#                               GPU environment (see README "GPU machines")
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX:-}
WITH_APT=${WITH_APT:-1}

log() { echo "$(date '+%F %T') [install] $*"; }

# Debian packages: audio tools and the mini corpus's TTS engines (docs/data.md "Mini corpus").
# SVOX pico is in Debian's non-free component: added for its own install through a separate
# sources list (the system's lists stay as they are).
APT_PACKAGES=(espeak-ng sox ffmpeg flite festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k)
APT_NONFREE=(libttspico-utils)

apt_missing() {  # prints the packages of "$@" that are not installed
  local p
  for p in "$@"; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done
}

nonfree_sources() {  # one-line apt sources: the system's own archives of this release + non-free
  . /etc/os-release
  local component=non-free
  [ "${ID:-}" = ubuntu ] && component=multiverse
  { awk -v rel="$VERSION_CODENAME" '$1 == "deb" { sub(/\[[^]]*\] /, ""); if ($3 == rel) print $2 }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true   # absent files
    awk -v rel="$VERSION_CODENAME" 'BEGIN { RS = "" }
      { uris = ""; ok = 0
        for (i = 1; i <= NF; i++) {
          if ($i == "URIs:") { for (j = i + 1; j <= NF && $j !~ /:$/; j++) uris = uris " " $j }
          if ($i == "Suites:") { for (j = i + 1; j <= NF && $j !~ /:$/; j++) if ($j == rel) ok = 1 } }
        if (ok) { n = split(uris, u, " "); for (k = 1; k <= n; k++) print u[k] } }' \
      /etc/apt/sources.list.d/*.sources 2>/dev/null || true
  } | sort -u | while read -r uri; do echo "deb $uri $VERSION_CODENAME $component"; done
}

install_system_packages() {
  local missing=() nonfree=()
  if command -v dpkg-query >/dev/null; then
    mapfile -t missing < <(apt_missing "${APT_PACKAGES[@]}")
    mapfile -t nonfree < <(apt_missing "${APT_NONFREE[@]}")
  else
    for tool in espeak-ng sox ffmpeg flite festival pico2wave; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  fi
  [ $((${#missing[@]} + ${#nonfree[@]})) -eq 0 ] && return 0
  if [ "$WITH_APT" != 1 ]; then
    log "WARNING: missing ${missing[*]} ${nonfree[*]} (WITH_APT=0); the mini corpus and audio tests need them"; return 0
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    log "ERROR: missing ${missing[*]} ${nonfree[*]}. Install them with your system package manager, e.g."
    log "       sudo apt-get install -y --no-install-recommends ${APT_PACKAGES[*]} ${APT_NONFREE[*]}"
    log "       (${APT_NONFREE[*]}: Debian non-free / Ubuntu multiverse)"
    exit 1
  fi
  log "apt-get install ${missing[*]} ${nonfree[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  [ ${#missing[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ ${#nonfree[@]} -eq 0 ] && return 0
  local list opts
  list=$(mktemp)
  nonfree_sources > "$list"
  [ -s "$list" ] || { log "ERROR: no archive for ${VERSION_CODENAME:-this release} in the apt sources; install ${nonfree[*]} by hand (non-free / multiverse)"; exit 1; }
  opts=(-o "Dir::Etc::sourcelist=$list" -o APT::Get::List-Cleanup=0)
  apt-get "${opts[@]}" update -qq
  apt-get "${opts[@]}" install -y -qq --no-install-recommends "${nonfree[@]}" >/dev/null
  rm -f "$list"
}

install_system_packages

install_chromium() {  # optional: the headless test of the listening page (samples.html) uses it
  command -v chromium >/dev/null && return 0
  if [ "$WITH_APT" = 1 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    log "apt-get install chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    log "NOTE: chromium is not installed; the samples.html browser test will be skipped"
  fi
}
install_chromium

stamp="$VENV/.dualspeech-install-stamp"
want=$(cat tools/install.sh tools/constraints.txt tools/requirements*.txt setup.py \
       <(echo "$TORCH_SPEC $TORCH_INDEX") | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "environment $VENV is up to date"; exit 0
fi

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

# torch first, alone: a later unpinned requirement must never pull the CUDA build.
log "installing $TORCH_SPEC"
if [ -n "$TORCH_INDEX" ]; then "${pip[@]}" "$TORCH_SPEC" --index-url "$TORCH_INDEX"; else "${pip[@]}" "$TORCH_SPEC"; fi

log "installing pinned requirements"
"${pip[@]}" -c tools/constraints.txt -r tools/requirements.txt
"${pip[@]}" -c tools/constraints.txt --no-deps -r tools/requirements-nodeps.txt
"${pip[@]}" -c tools/constraints.txt --no-deps -e .

if "$VENV/bin/python" -c 'import importlib.util,sys; sys.exit(importlib.util.find_spec("torchaudio") is None)'; then
  log "ERROR: torchaudio got into $VENV; it breaks lhotse and transformers here. Run: $VENV/bin/pip uninstall -y torchaudio"
  exit 1
fi
echo "$want" > "$stamp"
log "done: $VENV ready ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
