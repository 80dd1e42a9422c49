#!/usr/bin/env bash
# Text conditioning, as an ablation on cold-start SKUs of the demo lake. One SKU in four is made
# new: only its last COLD days before the held-out 28 exist. Two fine-tunes of models/small on the
# same data, steps and seed — one reading each SKU's product text (catalog + reviews, the demo's
# tokenizer), one without — are then scored on the cold-start series' 28 held-out days with
# `restock evaluate`: the text model with and without its text, the plain model, zero-shot,
# seasonal naive and ets.
# Usage: benches/lm_text_ablation.sh [SKUS=100] [STEPS=240] [COLD=21] [OUT=/tmp/restock-text] [LR=3e-4]
# Environment: COVARIATES=calendar.weekend,… gives both fine-tunes (and the scoring) these
# calendar covariates (`lm::calendar`), read in the model's pretrained covariate slots;
# WEEKEND_COL=1 is COVARIATES=calendar.weekend (it used to be a column; the flag is the same).
# LM_INPUT=1 trains and scores on what pipelines/lm_nightly.yaml feeds the model (sql/lm_demand.sql:
# stockout days masked, so only the days without one are scored) with its covariates (default
# COVARIATES=promo,calendar.weekend,category_last_year; the category's demand a year earlier is
# computed without the cold-start SKUs' days before their start).
# SHORT=0.25 cuts that share of both fine-tunes' training windows to a new SKU's first days
# (`short_windows`: 3–14 values of context, then 32 predicted).
SKUS=${1:-100} STEPS=${2:-240} COLD=${3:-21} OUT=${4:-/tmp/restock-text} LR=${5:-3e-4}
SW=${SHORT:+, short_windows: $SHORT}
source "$(dirname "$0")/lm_ablation_lib.sh"
COLD_SKU="CAST(substr(sku_id, 5) AS INT) % 4 = 0"
[ -n "${WEEKEND_COL:-}" ] && COVARIATES=${COVARIATES:-calendar.weekend}
HISTORY="NOT ($COLD_SKU) OR date > $LAST - INTERVAL '$((28 + COLD))' DAY"
FROM="demand_daily" COLS="" SELECT=""
if [ -n "${LM_INPUT:-}" ]; then
    COVARIATES=${COVARIATES:-promo,calendar.weekend,category_last_year}
    DEMAND_WHERE=$HISTORY
    source benches/lm_demand_sql.sh
    FROM="lm" COLS=", promo, category_last_year" SELECT="$LM_DEMAND"
fi
COV="" EVCOV=()
if [ -n "${COVARIATES:-}" ]; then
    COV=", covariates: [$COVARIATES]" EVCOV=(--covariates "$COVARIATES")
fi
# Training data: warm SKUs up to the held-out month; cold SKUs only their last COLD days before it.
"$R" query --lake "$L" --format parquet --output "$OUT/lake/raw/train_demand/part-0.parquet" \
    "$SELECT SELECT sku_id, location_id, date, units$COLS FROM $FROM WHERE date <= $LAST - INTERVAL '28' DAY AND ($HISTORY)"
# Evaluation data: the cold-start series, COLD days of context + 28 held out, and their text.
"$R" query --lake "$L" --format parquet --output "$OUT/cold.parquet" \
    "$SELECT SELECT concat(sku_id, '/', location_id) AS series_id, date AS ts, CAST(units AS DOUBLE) AS value$COLS FROM $FROM
     WHERE $COLD_SKU AND date > $LAST - INTERVAL '$((28 + COLD))' DAY ORDER BY 1, 2"
"$R" query --lake "$L" --format parquet --output "$OUT/text.parquet" \
    "SELECT DISTINCT concat(d.sku_id, '/', d.location_id) AS series_id, p.text FROM demand_daily d JOIN product_text p ON d.sku_id = p.sku_id"
finetune text ", products: table:product_text, tokenizer: table:tokenizer" ", text: { input: products, tokenizer: tokenizer, max_tokens: 32 }$COV$SW"
finetune plain "" "$COV$SW"
ev() { "$R" evaluate --data "$OUT/cold.parquet" --horizon 28 --season 7 --paths 20 --context 112 "$@"; }
echo "== cold-start series: $COLD days of history, 28 held out"
echo "-- baselines and zero-shot models/small"; ev --methods seasonal_naive,ets,lm --model models/small
[ -n "$COV" ] && { echo "-- zero-shot reading $COVARIATES"; ev --methods lm --model models/small "${EVCOV[@]}"; }
echo "-- fine-tuned without text";             ev --methods lm --model "$OUT/plain"
echo "-- fine-tuned with text, text withheld"; ev --methods lm --model "$OUT/text"
echo "-- fine-tuned with text, reading it";    ev --methods lm --model "$OUT/text" --text "$OUT/text.parquet"
