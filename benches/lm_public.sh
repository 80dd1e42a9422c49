#!/usr/bin/env bash
# `restock evaluate` on public tables no default was chosen on (benches/lm_public.py: tourism
# quarterly, US employment monthly, GAFA stock prices as trading-day random walks), every
# method at its defaults, one table per set.
# Usage: benches/lm_public.sh [MODEL=models/small] [OUT=/tmp/lm-public] [EXTRA evaluate flags…]
# (RESTOCK=path/to/restock to use another build.)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
MODEL=${1:-models/small} OUT=${2:-/tmp/lm-public}
shift $(($# < 2 ? $# : 2))
R=${RESTOCK:-$PWD/target/debug/restock}
[ -x "$R" ] || cargo build --locked --bin restock
python3 -c "import polars" 2>/dev/null || pip_install "polars==2.1.0"
[ -d .data/tsdata ] || scripts/fetch-data
[ -f "$OUT/gafa.parquet" ] || python3 benches/lm_public.py .data "$OUT"
run() { # name horizon [evaluate flags]
    echo "== $1 (horizon $2)"
    "$R" -q evaluate --data "$OUT/$1.parquet" --horizon "$2" --model "$MODEL" \
        --methods naive,seasonal_naive,ets,theta,lm,ensemble "${@:3}"
}
run tourism 8 "$@"
run us_employment 24 "$@"
run gafa 30 --season 1 --windows 3 "$@"
