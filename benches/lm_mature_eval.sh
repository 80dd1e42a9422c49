#!/usr/bin/env bash
# What a fine-tune does to mature series: on the demo lake an LM ablation bench left in OUT
# (e.g. benches/lm_text_ablation.sh's), a quarter of the products sold from the lake's first day
# (odd SKU numbers ≡ 1 mod 4), as pipelines/lm_nightly.yaml feeds them to the model, scored
# on their last 28 days — the held-out quarter no fine-tune's training window reaches — with the
# three covariates. Prints WQL / MASE zero-shot and for each model folder given (RESTOCK: another
# restock binary).
# Usage: benches/lm_mature_eval.sh OUT MODEL_DIR...  (e.g. /tmp/rt-life /tmp/rt-life/plain)
set -euo pipefail
OUT=$1; shift
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
R=${RESTOCK:-$PWD/target/debug/restock}
source benches/lm_demand_sql.sh
"$R" query --lake "file://$OUT/lake" --format parquet --output "$OUT/mature.parquet" "$LM_DEMAND
  SELECT concat(sku_id, '/', location_id) AS series_id, date AS ts, CAST(units AS DOUBLE) AS value, promo, category_last_year
  FROM lm WHERE sku_id IN (SELECT sku_id FROM demand_daily GROUP BY sku_id
    HAVING min(date) = (SELECT min(date) FROM demand_daily) AND CAST(substr(sku_id, 5) AS INT) % 4 = 1) ORDER BY 1, 2"
for model in models/small "$@"; do
    echo "-- $model"
    "$R" evaluate --data "$OUT/mature.parquet" --horizon 28 --season 7 --paths 20 --context 112 \
        --covariates promo,calendar.weekend,category_last_year --methods lm --model "$model" | grep -E "series|│ lm"
done
