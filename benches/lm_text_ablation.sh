#!/usr/bin/env bash
# Text conditioning, as an ablation on cold-start SKUs of the demo lake. The cold-start SKUs are
# half the products launched during the history (those with an even number and at least
# COLD + 28 days of it): each is scored on the 28 days after its first COLD days, and nothing
# later of it is trained on — the lake as it stood COLD days after the launch, for that SKU. Two
# fine-tunes of models/small on the same data, steps and seed — one reading each SKU's product
# text (catalog + reviews, the demo's tokenizer), one without — are then scored on those 28 days
# with `restock evaluate`: the text model with and without its text, the plain model, zero-shot,
# seasonal naive and ets. (The demo's text states each product's life cycle: a limited edition's
# launch peak that fades, a staple's build-up; see src/demo/text.rs.)
# Usage: benches/lm_text_ablation.sh [SKUS=500] [STEPS=240] [COLD=7] [OUT=/tmp/restock-text] [LR=3e-4]
# Environment: COVARIATES=calendar.weekend,… gives both fine-tunes (and the scoring) these
# calendar covariates (`lm::calendar`), read in the model's pretrained covariate slots;
# WEEKEND_COL=1 is COVARIATES=calendar.weekend (it used to be a column; the flag is the same).
# LM_INPUT=1 trains and scores on what pipelines/lm_nightly.yaml feeds the model (sql/lm_demand.sql:
# stockout days masked, so only the days without one are scored) with its covariates (default
# COVARIATES=promo,calendar.weekend,category_last_year; the category's demand a year earlier is
# computed without the cold-start SKUs' days after the scored ones).
# SHORT=0.25 cuts that share of both fine-tunes' training windows to a new SKU's first days
# (`short_windows`: 3–14 values of context, then 32 predicted; a launched product's at launch).
# REUSE=1: the demo lake of an earlier run in OUT (lm_ablation_lib.sh); EVAL_EVERY, PATIENCE: early
# stopping (40, 4); BY_LIFE=1 also scores the base and the fine-tunes per life cycle;
# TEXT_OPTS="dropout: 0.5" adds to the text fine-tune's `text:` options; BASE=DIR fine-tunes and
# scores zero-shot another model folder than models/small (e.g. a text-pretrained one);
# OWN_TOKENIZER=1 has the text fine-tune keep the base's tokenizer instead of the lake's;
# PLAIN_ONLY=1 runs only the fine-tune without text (and the rows that need no text model);
# SEED, RESTOCK: see lm_ablation_lib.sh.
SKUS=${1:-500} STEPS=${2:-240} COLD=${3:-7} OUT=${4:-/tmp/restock-text} LR=${5:-3e-4}
SW=${SHORT:+, short_windows: $SHORT}
source "$(dirname "$0")/lm_ablation_lib.sh"
# The cold-start SKUs and their first day; a demand_daily row of one within its first N days.
COLD_SKUS="(SELECT sku_id, min(date) AS first FROM demand_daily GROUP BY sku_id
            HAVING CAST(substr(sku_id, 5) AS INT) % 2 = 0 AND min(date) > (SELECT min(date) FROM demand_daily)
               AND min(date) <= $LAST - INTERVAL '$((28 + COLD))' DAY)"
cold_within() {
    echo "EXISTS (SELECT 1 FROM $COLD_SKUS AS c WHERE c.sku_id = demand_daily.sku_id AND demand_daily.date < c.first + INTERVAL '$1' DAY)"
}
not_cold_after() {
    echo "NOT EXISTS (SELECT 1 FROM $COLD_SKUS AS c WHERE c.sku_id = demand_daily.sku_id AND demand_daily.date >= c.first + INTERVAL '$1' DAY)"
}
[ -n "${WEEKEND_COL:-}" ] && COVARIATES=${COVARIATES:-calendar.weekend}
HISTORY=$(not_cold_after "$COLD")
FROM="demand_daily" COLS="" SELECT=""
if [ -n "${LM_INPUT:-}" ]; then
    COVARIATES=${COVARIATES:-promo,calendar.weekend,category_last_year}
    DEMAND_WHERE=$(not_cold_after $((28 + COLD)))
    source benches/lm_demand_sql.sh
    FROM="lm" COLS=", promo, category_last_year" SELECT="$LM_DEMAND"
fi
COV="" EVCOV=()
if [ -n "${COVARIATES:-}" ]; then
    COV=", covariates: [$COVARIATES]" EVCOV=(--covariates "$COVARIATES")
fi
# `rows KEEP LIST`: LIST, then the covariates, of the demand rows kept (KEEP: a condition on
# demand_daily's rows; LIST: columns of $FROM AS x).
rows() {
    echo "$SELECT SELECT $2${COLS//, /, x.} FROM $FROM AS x
          JOIN (SELECT sku_id, location_id, date FROM demand_daily WHERE $1) AS k
            ON k.sku_id = x.sku_id AND k.location_id = x.location_id AND k.date = x.date"
}
# Training data: every SKU but the cold-start ones; those only their first COLD days.
"$R" query --lake "$L" --format parquet --output "$OUT/lake/raw/train_demand/part-0.parquet" "$(rows "$HISTORY" "x.sku_id, x.location_id, x.date, x.units")"
# Evaluation data: the cold-start series, COLD days of context + 28 held out, and their text.
"$R" query --lake "$L" --format parquet --output "$OUT/cold.parquet" \
    "$(rows "$(cold_within $((28 + COLD)))" \
        "concat(x.sku_id, '/', x.location_id) AS series_id, x.date AS ts, CAST(x.units AS DOUBLE) AS value") ORDER BY 1, 2"
"$R" query --lake "$L" --format parquet --output "$OUT/text.parquet" \
    "SELECT DISTINCT concat(d.sku_id, '/', d.location_id) AS series_id, p.text FROM demand_daily d JOIN product_text p ON d.sku_id = p.sku_id"
# OWN_TOKENIZER=1: the text fine-tune keeps the base's own tokenizer (a base pretrained reading
# text ships one) instead of reading the lake's, whose ids get the base's embeddings by token text.
TOK_IN=", tokenizer: table:tokenizer" TOK_CFG=", tokenizer: tokenizer"
[ -n "${OWN_TOKENIZER:-}" ] && TOK_IN="" TOK_CFG=""
[ -z "${PLAIN_ONLY:-}" ] && finetune text ", products: table:product_text$TOK_IN" ", text: { input: products$TOK_CFG, max_tokens: 32${TEXT_OPTS:+, $TEXT_OPTS} }$COV$SW"
finetune plain "" "$COV$SW"
ev() { "$R" evaluate --data "${DATA:-$OUT/cold.parquet}" --horizon 28 --season 7 --paths 20 --context 112 "$@"; }
echo "== cold-start series: $COLD days of history, 28 held out"
echo "-- baselines and zero-shot $BASE"; ev --methods seasonal_naive,ets,lm --model "$BASE"
[ -n "$COV" ] && { echo "-- zero-shot reading $COVARIATES"; ev --methods lm --model "$BASE" "${EVCOV[@]}"; }
# A base pretrained reading synthetic product text (`lm::describe`) reads this lake's text
# zero-shot through its own tokenizer; one without a tokenizer ignores it (evaluate says so).
echo "-- zero-shot reading the text${COV:+ and $COVARIATES}"; ev --methods lm --model "$BASE" "${EVCOV[@]}" --text "$OUT/text.parquet"
echo "-- fine-tuned without text";             ev --methods lm --model "$OUT/plain"
if [ -z "${PLAIN_ONLY:-}" ]; then
    echo "-- fine-tuned with text, text withheld"; ev --methods lm --model "$OUT/text"
    echo "-- fine-tuned with text, reading it";    ev --methods lm --model "$OUT/text" --text "$OUT/text.parquet"
fi
# BY_LIFE=1: the fine-tuned rows again for each life cycle the titles state (limited editions,
# staples, the rest).
if [ -n "${BY_LIFE:-}" ]; then
    for life in "Limited Edition" "Everyday Staple" steady; do
        titled="title LIKE '%$life%'"
        [ "$life" = steady ] && titled="title NOT LIKE '%Limited Edition%' AND title NOT LIKE '%Everyday Staple%'"
        "$R" query --lake "$L" --format parquet --output "$OUT/cold_life.parquet" \
            "$(rows "$(cold_within $((28 + COLD))) AND sku_id IN (SELECT sku_id FROM product_text WHERE $titled)" \
                "concat(x.sku_id, '/', x.location_id) AS series_id, x.date AS ts, CAST(x.units AS DOUBLE) AS value") ORDER BY 1, 2"
        echo "-- $life: zero-shot without and with text; fine-tuned without text, with text withheld, reading it"
        models=("$BASE" "$BASE --text $OUT/text.parquet" "$OUT/plain")
        [ -z "${PLAIN_ONLY:-}" ] && models+=("$OUT/text" "$OUT/text --text $OUT/text.parquet")
        for model in "${models[@]}"; do
            # (word splitting of $model on purpose: some add --text)
            # shellcheck disable=SC2086
            DATA="$OUT/cold_life.parquet" ev --methods lm "${EVCOV[@]}" --model $model | grep "│ lm"
        done
    done
fi
