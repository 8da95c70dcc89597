#!/usr/bin/env bash
# Stage 0 with --download true: fetch LibriSpeech from openslr.org with lhotse into the parent of
# $LIBRISPEECH, which must end in LibriSpeech (the archives unpack to <parent>/LibriSpeech/<part>).
# Already unpacked parts are skipped. Parts: $LIBRISPEECH_PARTS (default: all seven).
set -euo pipefail
. ./db.sh
[ -n "$LIBRISPEECH" ] || { echo "set LIBRISPEECH in db.sh to <download dir>/LibriSpeech" >&2; exit 1; }
[ "$(basename "$LIBRISPEECH")" = LibriSpeech ] || { echo "LIBRISPEECH=$LIBRISPEECH must end in /LibriSpeech (the archives unpack there)" >&2; exit 1; }
python -c 'import sys; from lhotse.recipes import download_librispeech as d; d(sys.argv[1], sys.argv[2].split())' \
  "$(dirname "$LIBRISPEECH")" "${LIBRISPEECH_PARTS:-train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other}"
