#!/usr/bin/env bash
# Known covariates, as an ablation on the demo lake: two fine-tunes of models/small on all but
# the last 28 days (same data, steps and seed), one reading the promotion calendar's daily
# `promo` flag as a known covariate, one without; then `restock evaluate` on the held-out 28
# days, whose promotion days the calendar planned in advance — over all series, and over the
# series of SKUs with a promotion in those 28 days; beside them models/small zero-shot, without
# and with the flag in its pretrained covariate slots. Then the same with the weekend as a
# built-in calendar covariate (`calendar.weekend`, computed from the date) beside the flag, and
# then also the category's demand a year earlier (`category_last_year`, pipelines/lm_nightly.yaml).
# Usage: benches/lm_covariates_ablation.sh [SKUS=50] [STEPS=240] [OUT=/tmp/restock-cov] [LR=1e-3]
SKUS=${1:-50} STEPS=${2:-240} OUT=${3:-/tmp/restock-cov} LR=${4:-1e-3}
source "$(dirname "$0")/lm_ablation_lib.sh"
source benches/lm_demand_sql.sh
"$R" query --lake "$L" --format parquet --output "$OUT/lake/raw/train_demand/part-0.parquet" \
    "$LM_DEMAND SELECT sku_id, location_id, date, units, promo, category_last_year FROM sold WHERE date <= $LAST - INTERVAL '28' DAY"
COLS="concat(sku_id, '/', location_id) AS series_id, date AS ts, CAST(units AS DOUBLE) AS value, promo, category_last_year"
"$R" query --lake "$L" --format parquet --output "$OUT/long.parquet" "$LM_DEMAND SELECT $COLS FROM sold ORDER BY 1, 2"
"$R" query --lake "$L" --format parquet --output "$OUT/promoted.parquet" "$LM_DEMAND SELECT $COLS FROM sold
     WHERE sku_id IN (SELECT sku_id FROM demand_daily WHERE promo AND date > $LAST - INTERVAL '28' DAY) ORDER BY 1, 2"
finetune promo "" ", covariates: [promo]"
finetune plain "" ""
finetune calendar "" ", covariates: [promo, calendar.weekend]"
finetune season "" ", covariates: [promo, calendar.weekend, category_last_year]"
ev() { "$R" evaluate --horizon 28 --season 7 --paths 20 --context 112 "$@"; }
for data in long promoted; do
    echo "== $data series: last 28 days held out"
    echo "-- baselines and zero-shot models/small"; ev --data "$OUT/$data.parquet" --methods seasonal_naive,ets,lm --model models/small
    echo "-- zero-shot reading the promo flag";    ev --data "$OUT/$data.parquet" --methods lm --model models/small --covariates promo
    echo "-- fine-tuned without covariates";       ev --data "$OUT/$data.parquet" --methods lm --model "$OUT/plain"
    echo "-- fine-tuned reading the promo flag";   ev --data "$OUT/$data.parquet" --methods lm --model "$OUT/promo"
    echo "-- zero-shot reading promo, calendar.weekend"
    ev --data "$OUT/$data.parquet" --methods lm --model models/small --covariates promo,calendar.weekend
    echo "-- fine-tuned reading promo, calendar.weekend"; ev --data "$OUT/$data.parquet" --methods lm --model "$OUT/calendar"
    echo "-- zero-shot reading promo, calendar.weekend, category_last_year"
    ev --data "$OUT/$data.parquet" --methods lm --model models/small --covariates promo,calendar.weekend,category_last_year
    echo "-- fine-tuned reading promo, calendar.weekend, category_last_year"; ev --data "$OUT/$data.parquet" --methods lm --model "$OUT/season"
done
