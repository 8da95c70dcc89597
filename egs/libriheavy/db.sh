# Where the corpus lives (db.sh, read by run.sh). Edit the paths or export the variables before
# ./run.sh; README.md shows where to get them and the expected layout.
LIBRIHEAVY=${LIBRIHEAVY:-}          # dir with libriheavy_cuts_medium.jsonl.gz (from k2-fsa/libriheavy)
LIBRILIGHT=${LIBRILIGHT:-}          # Libri-Light audio root with small/ medium/ large/
