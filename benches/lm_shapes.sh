#!/usr/bin/env bash
# `restock evaluate` on long tables of other shapes (benches/lm_shapes.py: hourly timestamps,
# weekly counts with gaps, quarterly values around zero, short yearly growth, clean linear trends
# of 10-100 points, steady levels under 1 % noise): the statistical methods, the LM and their
# ensemble, one table per shape.
# Usage: benches/lm_shapes.sh [MODEL=models/small] [OUT=/tmp/lm-shapes]
# (RESTOCK=path/to/restock to use another build.)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
MODEL=${1:-models/small} OUT=${2:-/tmp/lm-shapes}
R=${RESTOCK:-$PWD/target/debug/restock}
[ -x "$R" ] || cargo build --locked --bin restock
python3 -c "import polars" 2>/dev/null || pip_install "polars==2.1.0"
python3 benches/lm_shapes.py "$OUT"
run() { # name horizon season
    echo "== $1 (horizon $2, season $3)"
    "$R" -q evaluate --data "$OUT/$1.parquet" --horizon "$2" --season "$3" --model "$MODEL" \
        --methods naive,seasonal_naive,ets,theta,lm,ensemble --ensemble ets,theta,lm
}
run hourly 48 24
run weekly 13 52
run quarterly 8 4
run yearly 6 1
for n in 10 20 40 100; do run "trend$n" 6 1; done
run level 6 1
