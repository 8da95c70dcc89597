# Where the corpus lives (db.sh, read by run.sh). Edit the path(s) or export the variable(s)
# before ./run.sh; README.md shows where to get the corpus and the expected layout.
VCTK=${VCTK:-}                          # VCTK-Corpus-0.92 with wav48_silence_trimmed/ txt/
