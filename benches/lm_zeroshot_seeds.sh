#!/usr/bin/env bash
# A checkpoint zero-shot on aus_retail and PBS (h = 12, m = 12), as point 9 of the LM issue asks:
# seasonal naive, then the LM (defaults: two context lengths, 20 paths) averaged over SEEDS seeds
# of the draws, on the last 12 months (window 1) and on the last 12 and the 12 before (windows 2).
# Usage: benches/lm_zeroshot_seeds.sh [MODEL=models/small] [CONTEXT=256] [SEEDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
MODEL=${1:-models/small} CONTEXT=${2:-256} SEEDS=${3:-3}
R="$PWD/target/debug/restock"
[ -x "$R" ] || cargo build --locked --bin restock
for d in aus_retail pbs; do
    [ -f ".data/$d/long.parquet" ] || "$R" datasets fetch "$d"
    for w in 1 2; do
        "$R" -q evaluate --data ".data/$d/long.parquet" --horizon 12 --season 12 --windows "$w" --methods seasonal_naive |
            grep "│ seasonal_naive" | awk -v d="$d" -v w="$w" -F'┆' '{printf "%-10s windows %s seasonal_naive WQL %.4f MASE %.4f\n", d, w, $2, $3}'
        for s in $(seq 0 $((SEEDS - 1))); do
            "$R" -q evaluate --data ".data/$d/long.parquet" --horizon 12 --season 12 --windows "$w" --methods lm \
                --model "$MODEL" --context "$CONTEXT" --lm-seed "$s" | grep "│ lm"
        done | awk -v d="$d" -v w="$w" -v n="$SEEDS" -F'┆' '{a += $2; b += $3} END {printf "%-10s windows %s lm (mean of %d seeds) WQL %.4f MASE %.4f\n", d, w, n, a / n, b / n}'
    done
done
