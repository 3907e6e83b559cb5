#!/usr/bin/env bash
# Start-up and tail of a tiny run, A/B: a base revision (a temporary git worktree) against this working tree,
# alternating, on a fresh workdir (50 steps) and then a resume of it (to 100 steps). Wall seconds per command.
#   benchmarks/startup_ab.sh [BASE_REV] [CONFIG] [ROUNDS]      (defaults: HEAD albert_tiny 2)
set -euo pipefail
base=${1:-HEAD}; config=${2:-albert_tiny}; rounds=${3:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
git -C "$here" worktree add --detach "$scratch/base" "$base" >/dev/null
trap 'git -C "$here" worktree remove --force "$scratch/base"; rm -rf "$scratch"' EXIT
seconds() { local start; start=$(date +%s.%N); "$@" > "$scratch/last.log" 2>&1; echo "$(date +%s.%N) - $start" | bc; }
for round in $(seq "$rounds"); do
  for side in base work; do
    root=$here; [ "$side" = base ] && root=$scratch/base
    workdir=$scratch/${side}_$round
    fresh=$(cd "$root" && PYTHONPATH=$root seconds python -m bert_jax.cli train --config "$config" --workdir "$workdir" --config.train.steps=50)
    resume=$(cd "$root" && PYTHONPATH=$root seconds python -m bert_jax.cli train --config "$config" --workdir "$workdir" --config.train.steps=100)
    echo "round $round $side: fresh 50 steps ${fresh} s, resume to 100 ${resume} s"
  done
done
