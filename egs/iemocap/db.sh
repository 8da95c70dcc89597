# Where the corpus lives (db.sh, read by run.sh). Edit the path(s) or export the variable(s)
# before ./run.sh; README.md shows where to get the corpus and the expected layout.
IEMOCAP=${IEMOCAP:-}                    # IEMOCAP_full_release with Session1/ ... Session5/
