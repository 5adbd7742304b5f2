#!/usr/bin/env bash
# The rest of the evidence study, one cell per invocation (next_cells.py: each cell is scored as
# soon as it has trained, so snapshot.py can keep it), in the order of the README ("Power"): the
# reference runs (then the convergence check again), EFM in one run, the rest of tier 1, tier 2,
# tier 3, then the summary. Finished cells are skipped, so it can be started again at any time,
# on a new machine too (after `kedro run --env evidence --pipelines ingestion,preprocessing,split`):
# restore.py first puts the committed cells back, and next_cells.py lists what they need trained
# again (the parents of cells still to train: a restored cell has no checkpoint).
#   setsid bash docs/study/2026-12-06-evidence/run_grid.sh > /tmp/grid.log 2>&1 < /dev/null &
# Replace this file (write a copy, then mv) rather than edit it while it runs.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$(git -C "$here" rev-parse --show-toplevel)"
cells() { .venv/bin/python "$here/next_cells.py" "$@"; }
one_by_one() {
  local list
  list=$(cells "$@") || return  # a listing that fails stops the grid, not skips a tier
  for cell in $list; do
    bash "$here/run_tier.sh" --nodes "$cell.train,$cell.evaluate" || return
  done
}
.venv/bin/python "$here/restore.py" || exit
folds=$(tr ',' '\n' < data/evidence/restore_nodes.txt | grep '^study\.folds\.' | paste -sd,)
# An empty --nodes would select the whole pipeline, training every restored cell again.
[ -n "$folds" ] || { echo "no fold splits in restore_nodes.txt" >&2; exit 1; }
bash "$here/run_tier.sh" --nodes "$folds" || exit  # the fold splits, on a new machine
trained=$(cells --trained) || exit
for cell in $trained; do  # what a stopped invocation trained but did not score
  bash "$here/run_tier.sh" --nodes "$cell.evaluate" || exit
done
one_by_one baseline_equal || exit
bash "$here/run_tier.sh" --tags study.convergence || exit
one_by_one efm_one_run || exit
one_by_one ohem focal lovasz || exit
one_by_one baseline full init_previous error_only || exit
one_by_one efm_one_run_topk_all efm_one_run_no_boundary efm_one_run_error_only || exit
# Named, not the whole pipeline: that would train every restored cell again (no checkpoints).
bash "$here/run_tier.sh" --nodes study.check_convergence,study.summarize
