# Where the corpora live (db.sh, read by run.sh). Edit the paths or export the variables before
# ./run.sh; README.md shows where to get each one and the expected layout.
CVSS_C=${CVSS_C:-}                  # CVSS-C root with es-en/ and fr-en/ (train.tsv, train/*.mp3.wav ...)
COVOST2=${COVOST2:-}                # dir with covost_v2.en_de.tsv
COMMONVOICE_EN=${COMMONVOICE_EN:-}  # Common Voice English: validated.tsv, clips/*.mp3
COMMONVOICE_ES=${COMMONVOICE_ES:-}  # Common Voice Spanish (source text of CVSS-C es-en)
COMMONVOICE_FR=${COMMONVOICE_FR:-}  # Common Voice French (source text of CVSS-C fr-en)
