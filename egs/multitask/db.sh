# Corpus locations for the multitask recipe: the db.sh of every corpus recipe, so each corpus
# is configured in one place (edit ../<corpus>/db.sh or export the variables).
for _db in ../librispeech ../libritts_r ../cvss ../iemocap ../libriheavy ../vctk; do
  # shellcheck source=/dev/null   # each corpus recipe's db.sh, checked on its own
  . "$_db/db.sh"
done
unset _db
