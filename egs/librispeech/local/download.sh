#!/usr/bin/env bash
# Stage 0 with --download true: LibriSpeech from openslr.org into $LIBRISPEECH (db.sh), which must
# end in /LibriSpeech. Parts: $LIBRISPEECH_PARTS (default: all seven).
# Usage: local/download.sh [PYTHON]   (the pipeline passes its --python)
set -euo pipefail
# shellcheck source=../db.sh
. ./db.sh
utils/download_lhotse.sh download_librispeech "$LIBRISPEECH" \
  "${LIBRISPEECH_PARTS:-train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other}" "${1:-python}"
