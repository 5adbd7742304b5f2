#!/usr/bin/env bash
# One invocation of the evidence study (README "Budget"), at a low scheduling weight (nice 15),
# with its machine and wall time appended to data/evidence/study_invocations.log (a seeded cell
# differs in its last digits on another processor). Arguments go to `kedro run`, e.g.
#   bash docs/study/2026-12-06-evidence/run_tier.sh --tags study.run.baseline_equal
# While an invocation runs, replace this file (write a copy, then mv) rather than edit it in
# place: bash reads a running script as it goes.
set -uo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
export DO_NOT_TRACK=1 KEDRO_DISABLE_TELEMETRY=true
log=data/evidence/study_invocations.log
mkdir -p data/evidence
start=$(date -u +%s)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo "$(date -u +%FT%TZ) start on ${cpu:-$(uname -m)} ($(nproc) CPUs): $*" >> "$log"
stopped() {
  echo "$(date -u +%FT%TZ) end (stopped by $1) wall_s=$(( $(date -u +%s) - start )) ${*:2}" >> "$log"
  kill -TERM "$child" 2>/dev/null
  wait "$child"
  exit 143
}
nice -n 15 .venv/bin/kedro run --env evidence --pipelines study --only-missing-outputs \
  --params tracking.enabled=false "$@" &
child=$!
trap 'stopped TERM "$@"' TERM
trap 'stopped INT "$@"' INT
trap 'stopped HUP "$@"' HUP
wait "$child"
rc=$?
echo "$(date -u +%FT%TZ) end rc=$rc wall_s=$(( $(date -u +%s) - start )) $*" >> "$log"
exit $rc
