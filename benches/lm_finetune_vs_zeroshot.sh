#!/usr/bin/env bash
# Fine-tuned against zero-shot on the demo lake, as pipelines/lm_nightly.yaml trains and reads
# the model: generate a small demo lake, fine-tune models/small with the train stage on all but
# the last 28 days (STEPS steps, fresh each run) of the pipeline's LM input (sql/lm_demand.sql:
# stockout days NULL, the known covariates COVS), and — as an ablation — on the same days with
# stockout days' sales kept as if they were demand; export both and score them beside the
# zero-shot base on the held-out 28 days with `restock evaluate`: on all days (sales as sold in
# the context and the actuals), and on the days without a stockout (the LM input: stockout days
# masked in the context, skipped by the metrics).
# Usage: benches/lm_finetune_vs_zeroshot.sh [SKUS=50] [STEPS=240] [OUT=/tmp/restock-ft]
# Environment: BASE (the model fine-tuned and scored zero-shot, default models/small), SEASON (the
# lag the model reads, default 7), CONTEXT (values read, default 112),
# WINDOW (fine-tune window, default 128), LR (default the train stage's), COVS (default
# promo,calendar.weekend,category_last_year; empty for none).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
SKUS=${1:-50} STEPS=${2:-240} OUT=${3:-/tmp/restock-ft} BASE=${BASE:-models/small}
SEASON=${SEASON:-7} CONTEXT=${CONTEXT:-112} WINDOW=${WINDOW:-128} LRCFG=${LR:+, lr: $LR}
COVS=${COVS-promo,calendar.weekend,category_last_year}
R="$PWD/target/debug/restock"
[ -x "$R" ] || cargo build --locked --bin restock
rm -rf "$OUT" && mkdir -p "$OUT"
L="file://$OUT/lake" S="sqlite://$OUT/state.db"
"$R" -q demo --skus "$SKUS" --lake "$L" --state "$S" --pipeline pipelines/nightly.yaml >/dev/null
source benches/lm_demand_sql.sh
CUT="(SELECT max(date) FROM demand_daily) - INTERVAL '28' DAY"
for days in all uncensored; do
    from=sold && [ "$days" = uncensored ] && from=lm
    "$R" query --lake "$L" --format parquet --output "$OUT/$days.parquet" "$LM_DEMAND SELECT concat(sku_id, '/', location_id) AS series_id,
        date AS ts, CAST(units AS DOUBLE) AS value, promo, category_last_year FROM $from ORDER BY 1, 2"
done
covcfg=${COVS:+, covariates: [${COVS//,/, }]}
for name in masked sales; do
    from=lm && [ "$name" = sales ] && from=sold
    mkdir -p "$OUT/lake/raw/train_$name"
    "$R" query --lake "$L" --format parquet --output "$OUT/lake/raw/train_$name/part-0.parquet" \
        "$LM_DEMAND SELECT sku_id, location_id, date, units, promo, category_last_year FROM $from WHERE date <= $CUT"
    cat > "$OUT/ft_$name.yaml" <<YAML
name: ft_$name
lake: $L
stages:
  - id: fine_tune
    kind: train
    inputs: { demand: raw/train_$name/ }
    outputs: [lm_$name]
    config: { series: [sku_id, location_id], time: date, target: units, base: $(realpath "$BASE"), season_length: $SEASON, steps: $STEPS, batch: 16, window: $WINDOW, eval_every: 40, patience: 2$LRCFG$covcfg }
YAML
    start=$(date +%s)
    "$R" -q run "$OUT/ft_$name.yaml" --state "$S"
    echo "fine-tune on $name days: $(( $(date +%s) - start )) s"
    "$R" query --lake "$L" "SELECT steps, best_step, registered, base_validation_loss, validation_loss FROM lm_$name"
    "$R" models --lake "$L" export "lm_$name" --out "$OUT/$name"
done
for days in all uncensored; do
    echo "== $days days, last 28 held out: seasonal naive and zero-shot $BASE"
    ev() { "$R" evaluate --data "$OUT/$days.parquet" --horizon 28 --season "$SEASON" --paths 20 --context "$CONTEXT" ${COVS:+--covariates $COVS} "$@"; }
    ev --methods seasonal_naive,lm --model "$BASE"
    for name in masked sales; do echo "-- fine-tuned on $name days"; ev --methods lm --model "$OUT/$name"; done
done
