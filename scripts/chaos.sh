#!/bin/sh
# Runs one chaos case against a compose cluster of docker-compose.yml (yours, or any with the
# same service names: jm-1, jm-2, tm-N, etcd-N), to rehearse a failure before production.
# It breaks one thing, shows how the cluster noticed, puts it back, and prints the jobs.
#
#   eval "$(scripts/compose-env.sh [-p PROJECT])"       # jmctl's endpoint and credentials
#   scripts/chaos.sh [-p PROJECT] CASE [ARGS]
#
# Cases (SECONDS: how long the fault lasts, default 10):
#   kill-executor SERVICE            docker kill, then start it again once it was declared lost
#   pause-executor SERVICE [SECONDS] docker pause (a frozen machine), then unpause
#   partition-executor SERVICE [SECONDS]
#                                    docker network disconnect (cut off, alive), then reconnect
#   slow-executor SERVICE [SECONDS]  tc netem delay 200ms 50ms loss 5% on its link (root: nsenter
#                                    into its network namespace; the kernel needs sch_netem)
#   kill-leader                      docker kill of the leading jobmaster, then start it again
#   pause-leader [SECONDS]           docker pause of the leader, then unpause
#   partition-leader [SECONDS]       network disconnect of the leader, then reconnect
#   kill-etcd [SERVICE]              docker kill of one etcd member (etcd-1), then start it
#   quorum-loss [SECONDS]            docker kill of etcd-2 and etcd-3, then start them
#
# Needs jmctl ($JMCTL, on PATH, or target/{release,debug}/jmctl), docker and docker-compose. tests/chaos.rs runs every case with
# assertions (JM_CHAOS=1); this script only acts and reports.
set -eu
cd "$(dirname "$0")/.."

project=${COMPOSE_PROJECT_NAME:-$(basename "$PWD" | tr -cd 'a-zA-Z0-9_-' | tr 'A-Z' 'a-z')}
if [ "${1:-}" = "-p" ]; then
  project=$2
  shift 2
fi
case_=${1:-}
[ -n "$case_" ] || { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
shift
# jmctl: $JMCTL, else the one on PATH, else this tree's release or debug build.
jmctl=${JMCTL:-}
if [ -z "$jmctl" ]; then
  for candidate in "$(command -v jmctl 2>/dev/null || true)" target/release/jmctl target/debug/jmctl; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      jmctl=$candidate
      break
    fi
  done
fi
[ -n "$jmctl" ] || { echo "chaos: jmctl not found (put it on PATH or set JMCTL)" >&2; exit 1; }

container() {
  id=$(docker-compose -p "$project" ps -q "$1" | head -n 1)
  [ -n "$id" ] || { echo "chaos: no service $1 in project $project" >&2; exit 1; }
  echo "$id"
}
network() { echo "${project}_cluster"; }
now_ms() { date +%s%3N; }
say() { echo "chaos: $*"; }

# Polls CONDITION (a shell command) every 100 ms for at most 120 s; prints the time it took.
wait_for() {
  what=$1
  shift
  start=$(now_ms)
  while ! "$@" >/dev/null 2>&1; do
    if [ $(($(now_ms) - start)) -gt 120000 ]; then
      say "gave up after 120 s waiting until $what"
      return 1
    fi
    sleep 0.1
  done
  say "$what after $(($(now_ms) - start)) ms"
}

registered() { "$jmctl" --output json executors | grep -q "\"id\": *\"$1\""; }
not_registered() { ! registered "$1"; }
leader_service() {
  "$jmctl" --output json leader | sed -n 's/.*"leader_endpoint": *"[a-z]*:\/\/\([^:"]*\).*/\1/p'
}
leader_is_not() { l=$(leader_service) && [ -n "$l" ] && [ "$l" != "$1" ]; }
nobody_leads() { ! "$jmctl" leader; }

report() {
  say "jobs now (RESTARTS counts task restarts):"
  "$jmctl" list || true
  "$jmctl" executors || true
}

seconds=10
case "$case_" in
kill-executor)
  svc=${1:?kill-executor SERVICE}
  docker kill "$(container "$svc")" >/dev/null
  say "killed $svc"
  wait_for "$svc declared lost" not_registered "$svc"
  docker start "$(container "$svc")" >/dev/null
  wait_for "$svc registered again" registered "$svc"
  ;;
pause-executor)
  svc=${1:?pause-executor SERVICE [SECONDS]}
  seconds=${2:-$seconds}
  docker pause "$(container "$svc")" >/dev/null
  say "paused $svc for $seconds s"
  wait_for "$svc declared lost" not_registered "$svc" || true
  sleep "$seconds"
  docker unpause "$(container "$svc")" >/dev/null
  wait_for "$svc registered again" registered "$svc"
  ;;
partition-executor)
  svc=${1:?partition-executor SERVICE [SECONDS]}
  seconds=${2:-$seconds}
  docker network disconnect "$(network)" "$(container "$svc")"
  say "cut $svc off for $seconds s"
  wait_for "$svc declared lost" not_registered "$svc" || true
  sleep "$seconds"
  docker network connect --alias "$svc" "$(network)" "$(container "$svc")"
  wait_for "$svc registered again" registered "$svc"
  ;;
slow-executor)
  svc=${1:?slow-executor SERVICE [SECONDS]}
  seconds=${2:-$seconds}
  pid=$(docker inspect -f '{{.State.Pid}}' "$(container "$svc")")
  nsenter -t "$pid" -n tc qdisc replace dev eth0 root netem delay 200ms 50ms distribution normal loss 5%
  say "netem on $svc for $seconds s (200 ms ± 50 ms, 5 % loss): it must stay registered"
  sleep "$seconds"
  nsenter -t "$pid" -n tc qdisc del dev eth0 root
  if registered "$svc"; then say "$svc stayed registered"; else say "$svc was declared lost: a false failover"; fi
  ;;
kill-leader | pause-leader | partition-leader)
  old=$(leader_service)
  [ -n "$old" ] || { say "nobody leads now"; exit 1; }
  seconds=${1:-$seconds}
  case "$case_" in
  kill-leader) docker kill "$(container "$old")" >/dev/null ;;
  pause-leader) docker pause "$(container "$old")" >/dev/null ;;
  partition-leader) docker network disconnect "$(network)" "$(container "$old")" ;;
  esac
  say "$case_: $old"
  wait_for "another jobmaster leads" leader_is_not "$old"
  say "leader now: $(leader_service)"
  [ "$case_" = kill-leader ] || sleep "$seconds"
  case "$case_" in
  kill-leader) docker start "$(container "$old")" >/dev/null ;;
  pause-leader) docker unpause "$(container "$old")" >/dev/null ;;
  partition-leader) docker network connect --alias "$old" "$(network)" "$(container "$old")" ;;
  esac
  say "$old is back (it stands by)"
  ;;
kill-etcd)
  svc=${1:-etcd-1}
  docker kill "$(container "$svc")" >/dev/null
  say "killed $svc; leader: $(leader_service)"
  sleep "$seconds"
  say "after $seconds s, leader: $(leader_service)"
  docker start "$(container "$svc")" >/dev/null
  ;;
quorum-loss)
  seconds=${1:-$seconds}
  docker kill "$(container etcd-2)" "$(container etcd-3)" >/dev/null
  say "killed etcd-2 and etcd-3 (quorum lost) for $seconds s"
  wait_for "nobody leads" nobody_leads
  sleep "$seconds"
  docker start "$(container etcd-2)" "$(container etcd-3)" >/dev/null
  wait_for "a jobmaster leads again" "$jmctl" leader
  ;;
*)
  echo "chaos: unknown case $case_ (scripts/chaos.sh without arguments lists them)" >&2
  exit 2
  ;;
esac
report
