#!/usr/bin/env bash
# The ceiling on the demo lake itself: a demo lake generated with its ground truth
# (`restock demo --truth`), then on its last 28 days the WQL of forecasts that know that truth
# (benches/demo_lake_oracle.py) beside seasonal naive, ets and the zero-shot `small` LM scored by
# `restock evaluate` on the same days — on all of them, and on the days without a stockout.
# Usage: benches/demo_lake_oracle.sh [SKUS=50] [OUT=/tmp/restock-oracle] [PATHS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
SKUS=${1:-50} OUT=${2:-/tmp/restock-oracle} PATHS=${3:-20}
R="$PWD/target/debug/restock"
[ -x "$R" ] || cargo build --locked --bin restock
rm -rf "$OUT" && mkdir -p "$OUT"
L="file://$OUT/lake" S="sqlite://$OUT/state.db"
"$R" -q demo --skus "$SKUS" --truth --lake "$L" --state "$S" --pipeline pipelines/nightly.yaml >/dev/null
cat > "$OUT/truth.yaml" <<YAML
name: truth
lake: $L
stages:
  - id: truth
    kind: sql
    inputs: { truth: raw/truth/ }
    outputs: [truth]
    config: { sql: "SELECT * FROM truth" }
YAML
"$R" -q run "$OUT/truth.yaml" --state "$S"
"$R" query --lake "$L" --format csv --output "$OUT/days.csv" \
    "SELECT concat(d.sku_id, '/', d.location_id) AS series_id, d.date AS day, d.units, d.censored, t.*
     FROM demand_daily d JOIN truth t ON d.sku_id = t.sku_id AND d.location_id = t.location_id AND d.date = t.date ORDER BY 1, 2"
.venv/bin/python benches/demo_lake_oracle.py "$OUT/days.csv" 28
for days in all uncensored; do
    value="CAST(units AS DOUBLE)"
    [ "$days" = uncensored ] && value="CASE WHEN censored THEN NULL ELSE CAST(units AS DOUBLE) END"
    "$R" query --lake "$L" --format parquet --output "$OUT/$days.parquet" \
        "SELECT concat(sku_id, '/', location_id) AS series_id, date AS ts, $value AS value FROM demand_daily ORDER BY 1, 2"
    echo "== restock evaluate, $days days (context 112, $PATHS paths)"
    "$R" evaluate --data "$OUT/$days.parquet" --horizon 28 --season 7 --methods seasonal_naive,ets,lm --model models/small --paths "$PATHS" --context 112
done
