#!/usr/bin/env bash
# `restock evaluate` on sets no default was chosen on (benches/lm_unseen.py: sparse daily counts,
# random walks, daily with weekly and yearly seasons, quarter-hourly loads, monthly trend × season
# at three scales, monthly with outliers, daily level shifts): every method, one table per set.
# Each set's season is the table's step's default, as a user who leaves --season out gets.
# Usage: benches/lm_unseen.sh [MODEL=models/small] [OUT=/tmp/lm-unseen] [EXTRA evaluate flags…]
# (RESTOCK=path/to/restock to use another build.)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
MODEL=${1:-models/small} OUT=${2:-/tmp/lm-unseen}
shift $(($# < 2 ? $# : 2))
R=${RESTOCK:-$PWD/target/debug/restock}
[ -x "$R" ] || cargo build --locked --bin restock
python3 -c "import polars" 2>/dev/null || pip_install "polars==2.1.0"
[ -f "$OUT/shifts.parquet" ] || python3 benches/lm_unseen.py "$OUT"
run() { # name horizon
    echo "== $1 (horizon $2)"
    "$R" -q evaluate --data "$OUT/$1.parquet" --horizon "$2" --model "$MODEL" \
        --methods naive,seasonal_naive,ets,theta,croston,tsb,lm,ensemble "${@:3}"
}
run intermittent 28 "$@"
run randomwalk 30 "$@"
run nn5 56 "$@"
run quarterhour 96 "$@"
run monthly 18 "$@"
run monthly_big 18 "$@"
run monthly_tiny 18 "$@"
run outliers 12 "$@"
run shifts 28 "$@"
