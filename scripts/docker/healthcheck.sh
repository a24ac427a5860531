#!/bin/sh
# The image's HEALTHCHECK. A jobmaster is alive when its HTTP port answers /healthz (200 when it
# leads, 503 as a standby: both are alive); a taskexecutor when its gRPC port accepts a
# connection. Ports come from --http / --listen (defaults 8081 and 6124), over https when a CA
# is configured (--tls-ca or JOBMASTER_TLS_CA). Other commands (jmctl, sh) are always healthy.
role=/tmp/jm-role
[ -r "$role" ] || exit 0
program=$(head -n 1 "$role")
value_of() { # value_of FLAG DEFAULT: the argument after FLAG (or FLAG=VALUE), else DEFAULT
  awk -v flag="$1" -v dflt="$2" '
    NR > 1 && prev == flag { print; found = 1; exit }
    NR > 1 && index($0, flag "=") == 1 { print substr($0, length(flag) + 2); found = 1; exit }
    { prev = $0 }
    END { if (!found) print dflt }' "$role"
}
port_of() { echo "${1##*:}"; }
case "$program" in
jobmaster)
  port=$(port_of "$(value_of --http "${JOBMASTER__SERVER__HTTP:-127.0.0.1:8081}")")
  ca=$(value_of --tls-ca "${JOBMASTER_TLS_CA:-}")
  if [ -n "$ca" ]; then
    # The certificate names the jobmaster by URI, and localhost only if --hosts said so:
    # liveness needs an answer, not the name check.
    code=$(curl -s -k -o /dev/null -w '%{http_code}' --max-time 2 "https://127.0.0.1:$port/healthz")
  else
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/healthz")
  fi
  case "$code" in
  200 | 503) exit 0 ;;
  *) echo "jobmaster HTTP port $port answered ${code:-nothing}"; exit 1 ;;
  esac
  ;;
taskexecutor)
  port=$(port_of "$(value_of --listen "${JOBMASTER__EXECUTOR__LISTEN:-127.0.0.1:6124}")")
  # A TCP connect (curl's telnet:// connects and leaves at once with no input).
  if curl -s --max-time 2 -o /dev/null "telnet://127.0.0.1:$port" </dev/null; then
    exit 0
  fi
  echo "taskexecutor port $port refuses connections"
  exit 1
  ;;
*)
  exit 0
  ;;
esac
