#!/usr/bin/env bash
# Stage 0 with --download true: fetch LibriTTS-R from openslr.org with lhotse into the parent of
# $LIBRITTS_R, which must end in LibriTTS_R (the archives unpack to <parent>/LibriTTS_R/<part>).
# Already unpacked parts are skipped. Parts: $LIBRITTS_R_PARTS (default: all seven).
set -euo pipefail
. ./db.sh
[ -n "$LIBRITTS_R" ] || { echo "set LIBRITTS_R in db.sh to <download dir>/LibriTTS_R" >&2; exit 1; }
[ "$(basename "$LIBRITTS_R")" = LibriTTS_R ] || { echo "LIBRITTS_R=$LIBRITTS_R must end in /LibriTTS_R (the archives unpack there)" >&2; exit 1; }
python -c 'import sys; from lhotse.recipes import download_librittsr as d; d(sys.argv[1], sys.argv[2].split())' \
  "$(dirname "$LIBRITTS_R")" "${LIBRITTS_R_PARTS:-train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other}"
