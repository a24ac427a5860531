#!/bin/sh
# Prints the environment jmctl needs to reach the compose cluster from the host, after copying
# the CA certificate and the operator token out of the cluster's `certs` volume:
#
#   eval "$(scripts/compose-env.sh)"           # then: jmctl leader, jmctl list, ...
#   eval "$(scripts/compose-env.sh -p NAME)"   # the cluster of project NAME (docker-compose -p)
#
# The files go to target/compose/PROJECT/ (ca.pem, operator.token, viewer.token; mode 0600).
# JM1_GRPC_PORT / JM2_GRPC_PORT as given to docker-compose (default 6123, 6223).
set -eu
cd "$(dirname "$0")/.."
project=${COMPOSE_PROJECT_NAME:-$(basename "$PWD" | tr -cd 'a-zA-Z0-9_-' | tr 'A-Z' 'a-z')}
if [ "${1:-}" = "-p" ] && [ -n "${2:-}" ]; then
  project=$2
fi
certs=$(docker-compose -p "$project" ps -q certs 2>/dev/null | head -n 1)
if [ -z "$certs" ]; then
  echo "compose-env: no cluster of project $project (docker-compose -p $project up -d first)" >&2
  exit 1
fi
out=target/compose/$project
mkdir -p "$out"
chmod 0700 "$out"
for f in ca.pem operator.token viewer.token; do
  docker cp "$certs:/certs/$f" "$out/$f.new"
  chmod 0600 "$out/$f.new"
  mv "$out/$f.new" "$out/$f"
done
dir=$(cd "$out" && pwd)
echo "export JOBMASTER_ENDPOINT=https://127.0.0.1:${JM1_GRPC_PORT:-6123},https://127.0.0.1:${JM2_GRPC_PORT:-6223}"
echo "export JOBMASTER_TLS_CA=$dir/ca.pem"
echo "export JOBMASTER_TOKEN=\$(cat $dir/operator.token)"
