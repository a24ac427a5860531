#!/bin/sh
# A batch word count in three vertices, driven by the environment the taskexecutor gives a task:
#   read#i   : reads every line of $1 whose number ≡ i (mod parallelism), writes each word to the
#              output file of the count subtask that owns it (a stable hash of the word);
#   count#j  : counts the words in all its input files, writes "word count" lines;
#   write#0  : merges every count's output, sorted, into $2.
# Usage in a job spec: command = ["sh", "examples/tasks/wordcount.sh", "INPUT", "OUTPUT"]
set -eu
input=$1
output=$2
case "$JM_VERTEX" in
read)
  # shellcheck disable=SC2086
  set -- $JM_OUTPUT_FILES
  awk -v n="$JM_PARALLELISM" -v me="$JM_SUBTASK" -v outs="$JM_OUTPUT_FILES" '
    BEGIN { k = split(outs, out, " "); chars = "abcdefghijklmnopqrstuvwxyz0123456789" }
    (NR - 1) % n == me {
      for (w = 1; w <= NF; w++) {
        word = tolower($w); gsub(/[^a-z0-9]/, "", word)
        if (word == "") continue
        h = 0
        for (c = 1; c <= length(word); c++) h = (h * 31 + index(chars, substr(word, c, 1))) % 1000003
        print word > out[(h % k) + 1]
      }
    }' "$input"
  ;;
count)
  # shellcheck disable=SC2086
  cat $JM_INPUT_FILES /dev/null | awk 'NF { c[$1]++ } END { for (w in c) print w, c[w] }' > "$JM_OUTPUT_FILES"
  ;;
write)
  # shellcheck disable=SC2086
  cat $JM_INPUT_FILES /dev/null | sort > "$output.tmp"
  mv "$output.tmp" "$output"
  ;;
*)
  echo "unknown vertex $JM_VERTEX" >&2
  exit 2
  ;;
esac
