# Where the corpus lives (db.sh, read by run.sh). Edit the path(s) or export the variable(s)
# before ./run.sh; README.md shows where to get the corpus and the expected layout.
LIBRISPEECH=${LIBRISPEECH:-}            # dir with train-clean-100/ dev-clean/ test-clean/ ...
LIBRISPEECH_SQA=${LIBRISPEECH_SQA:-}    # optional: SALMONN-style SQA annotations (enables SQA examples)
