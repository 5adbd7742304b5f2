#!/usr/bin/env bash
# One invocation of the evidence study (README "Budget"), at the lowest scheduling weight, with
# its machine and wall time appended to data/evidence/study_invocations.log (a seeded cell
# differs in its last digits on another processor). Arguments go to `kedro run`,
# e.g.  bash docs/study/2026-12-06-evidence/run_tier.sh --tags study.run.baseline_equal
set -uo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
export DO_NOT_TRACK=1 KEDRO_DISABLE_TELEMETRY=true
log=data/evidence/study_invocations.log
mkdir -p data/evidence
start=$(date -u +%s)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo "$(date -u +%FT%TZ) start on ${cpu:-$(uname -m)} ($(nproc) CPUs): $*" >> "$log"
nice -n 15 .venv/bin/kedro run --env evidence --pipelines study --only-missing-outputs \
  --params tracking.enabled=false "$@"
rc=$?
echo "$(date -u +%FT%TZ) end rc=$rc wall_s=$(( $(date -u +%s) - start )) $*" >> "$log"
exit $rc
