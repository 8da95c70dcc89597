#!/usr/bin/env bash
# Stage 1 of this recipe: CoVoST 2 en->de (corpus covost2) and CVSS-C es/fr->en (corpus cvss_c)
# from the db/ links stage 0 made (see db.sh and README.md).
# Usage: local/data.sh DATADIR NJ [PYTHON]   (run by the pipeline from the recipe dir with its --python)
set -euo pipefail
datadir=$1 nj=$2 python=${3:-python}
"$python" -m dualspeech.bin.prepare_corpus covost2 --corpus-dir db/commonvoice_en \
  --covost-dir db/covost2 --output-dir "$datadir" --nj "$nj"
"$python" -m dualspeech.bin.prepare_corpus cvss --corpus-dir db/cvss_c \
  --cv-dir es=db/commonvoice_es --cv-dir fr=db/commonvoice_fr --output-dir "$datadir" --nj "$nj"
