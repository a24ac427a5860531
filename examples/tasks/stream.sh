#!/bin/sh
# A streaming task for the two-city example: it runs until it is cancelled, printing a
# heartbeat line now and then. Pipelined data exchange is up to real task programs (the
# reference executor tells each task where its pipelined producers run, see the README).
trap 'echo "$JM_VERTEX#$JM_SUBTASK attempt $JM_ATTEMPT stopping"; exit 0' TERM INT
echo "$JM_VERTEX#$JM_SUBTASK attempt $JM_ATTEMPT started on $JM_EXECUTOR_ID"
while :; do
  sleep 1 &
  wait $!
done
