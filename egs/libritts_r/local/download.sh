#!/usr/bin/env bash
# Stage 0 with --download true: LibriTTS-R from openslr.org into $LIBRITTS_R (db.sh), which must
# end in /LibriTTS_R. Parts: $LIBRITTS_R_PARTS (default: all seven).
# Usage: local/download.sh [PYTHON]   (the pipeline passes its --python)
set -euo pipefail
# shellcheck source=../db.sh
. ./db.sh
utils/download_lhotse.sh download_librittsr "$LIBRITTS_R" \
  "${LIBRITTS_R_PARTS:-train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other}" "${1:-python}"
