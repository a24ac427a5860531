#!/bin/sh
# The image's entrypoint: `jobmaster ARGS`, `taskexecutor ARGS` or `jmctl ARGS` runs that
# program (remembering which, for the health check); anything else runs as given (e.g. sh).
set -e
case "${1:-}" in
jobmaster | taskexecutor | jmctl)
  # The health check reads what runs here, and the listen addresses from the arguments.
  printf '%s\n' "$@" >/tmp/jm-role 2>/dev/null || true
  exec "$@"
  ;;
"")
  exec jobmaster --help
  ;;
*)
  exec "$@"
  ;;
esac
