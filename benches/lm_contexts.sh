#!/usr/bin/env bash
# Context lengths: the shipped models/small zero-shot on aus_retail and PBS (h = 12, m = 12), its
# paths reading one context (--contexts 1), split across the context and half of it (2, the
# default) or also a quarter (3), at the same number of paths; each with SEEDS seeds of the
# draws, on the last 12 months (window 1) and on the 12 before them (--windows 2 scores both).
# Usage: benches/lm_contexts.sh [CONTEXT=256] [PATHS=20] [SEEDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
CONTEXT=${1:-256} PATHS=${2:-20} SEEDS=${3:-3}
R="$PWD/target/debug/restock"
[ -x "$R" ] || cargo build --locked --bin restock
for d in aus_retail pbs; do
    [ -f ".data/$d/long.parquet" ] || "$R" datasets fetch "$d"
    echo "== $d, context $CONTEXT, $PATHS paths: seasonal naive, then lm per --contexts and seed (WQL, MASE, 80 % coverage)"
    for w in 1 2; do
        "$R" -q evaluate --data ".data/$d/long.parquet" --horizon 12 --season 12 --windows "$w" --methods seasonal_naive |
            grep seasonal_naive | sed "s/^/windows $w: /"
    done
    for n in 1 2 3; do
        for s in $(seq 0 $((SEEDS - 1))); do
            for w in 1 2; do
                "$R" -q evaluate --data ".data/$d/long.parquet" --horizon 12 --season 12 --windows "$w" --methods lm \
                    --context "$CONTEXT" --contexts "$n" --paths "$PATHS" --lm-seed "$s" | grep "lm " | sed "s/^/contexts $n seed $s windows $w: /"
            done
        done
    done
done
