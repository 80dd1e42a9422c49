#!/usr/bin/env bash
# Known covariates zero-shot: a model pretrained with covariate slots (models/small.yaml's
# `n_covariates`) reads a demo lake's promotion flag and a weekend flag without any fine-tune,
# estimating their effects from each series' own context. Scores the last 28 days with
# `restock evaluate`, the model reading no covariates, then `promo`, then `promo,weekend`, over
# all series and over the series of SKUs promoted in those 28 days; then the weekend as the
# built-in calendar covariate (`calendar.weekend`, no column), and with `calendar.month_start`;
# then with the category's demand a year earlier (`category_last_year`, as pipelines/lm_nightly.yaml
# computes it).
# Usage: benches/lm_covariates_zeroshot.sh [SKUS=50] [MODEL=models/small] [OUT=/tmp/restock-covzs]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
SKUS=${1:-50} MODEL=${2:-models/small} OUT=${3:-/tmp/restock-covzs}
R="$PWD/target/debug/restock"
[ -x "$R" ] || cargo build --locked --bin restock
rm -rf "$OUT" && mkdir -p "$OUT"
L="file://$OUT/lake" S="sqlite://$OUT/state.db"
"$R" -q demo --skus "$SKUS" --lake "$L" --state "$S" --pipeline pipelines/nightly.yaml >/dev/null
LAST="(SELECT max(date) FROM demand_daily)"
source benches/lm_demand_sql.sh
COLS="concat(sku_id, '/', location_id) AS series_id, date AS ts, CAST(units AS DOUBLE) AS value, promo,
      date_part('dow', date) IN (0, 6) AS weekend, category_last_year"
"$R" query --lake "$L" --format parquet --output "$OUT/long.parquet" "$LM_DEMAND SELECT $COLS FROM sold ORDER BY 1, 2"
"$R" query --lake "$L" --format parquet --output "$OUT/promoted.parquet" "$LM_DEMAND SELECT $COLS FROM sold
     WHERE sku_id IN (SELECT sku_id FROM demand_daily WHERE promo AND date > $LAST - INTERVAL '28' DAY) ORDER BY 1, 2"
ev() { "$R" evaluate --horizon 28 --season 7 --paths 20 --context 112 --model "$MODEL" "$@"; }
for data in long promoted; do
    echo "== $data series: last 28 days held out"
    echo "-- baselines, and $MODEL reading no covariates"; ev --data "$OUT/$data.parquet" --methods seasonal_naive,ets,lm
    echo "-- reading promo";                              ev --data "$OUT/$data.parquet" --methods lm --covariates promo
    echo "-- reading promo, weekend";                     ev --data "$OUT/$data.parquet" --methods lm --covariates promo,weekend
    echo "-- reading promo, calendar.weekend (computed from ts)"
    ev --data "$OUT/$data.parquet" --methods lm --covariates promo,calendar.weekend
    echo "-- reading promo, calendar.weekend, calendar.month_start"
    ev --data "$OUT/$data.parquet" --methods lm --covariates promo,calendar.weekend,calendar.month_start
    echo "-- reading promo, calendar.weekend, category_last_year"
    ev --data "$OUT/$data.parquet" --methods lm --covariates promo,calendar.weekend,category_last_year
done
