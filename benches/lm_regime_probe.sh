#!/usr/bin/env bash
# Does a model follow a change of regime? Four monthly series of 112 months (last 12 held out),
# each scored alone by `restock evaluate` (lm, ets, seasonal_naive) for every model given:
#   launch  nothing for 80 months, then ~1,000 a month (20 months of it in the context)
#   shift   ~100 a month, then ~1,000 for the last 10 months of the context
#   trend   100 + 5 a month
#   flat    ~1,000 a month (the control)
# Usage: benches/lm_regime_probe.sh [MODEL ...]   (default models/small)
set -euo pipefail
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-$(ls -d .venv/lib/python3*/site-packages/torch/lib)}
R=${RESTOCK:-target/debug/restock}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lake"
wiggle="sin(i * 7.3)"
declare -A SERIES=(
    [launch]="CASE WHEN i < 80 THEN 0.0 ELSE 1000.0 + 50 * $wiggle END"
    [shift]="CASE WHEN i < 90 THEN 100.0 + 10 * $wiggle ELSE 1000.0 + 50 * $wiggle END"
    [trend]="100.0 + 5 * i + 10 * $wiggle"
    [flat]="1000.0 + 50 * $wiggle"
)
for name in launch shift trend flat; do
    "$R" query --lake "file://$work/lake" --format parquet --output "$work/$name.parquet" \
        "SELECT '$name' AS series_id, make_date(2000 + CAST(i / 12 AS INT), CAST(i % 12 AS INT) + 1, 1) AS ts, ${SERIES[$name]} AS value
         FROM unnest(range(0, 112)) AS t(i)" 2>/dev/null
done
for model in "${@:-models/small}"; do
    echo "== $model"
    for name in launch shift trend flat; do
        printf '%-7s' "$name"
        "$R" evaluate --data "$work/$name.parquet" --horizon 12 --season 12 --methods seasonal_naive,ets,lm --model "$model" --context 128 2>/dev/null \
            | awk -F'┆' '$1 ~ /(seasonal_naive|ets|lm) / { gsub(/[│ ]/, "", $1); gsub(/ /, "", $2); gsub(/ /, "", $3); printf "  %s WQL %s MASE %s", $1, $2, $3 } END { print "" }'
    done
done
