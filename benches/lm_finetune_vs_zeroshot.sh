#!/usr/bin/env bash
# Fine-tuned against zero-shot on the demo lake: generate a small demo lake, fine-tune
# models/small with the train stage on all but the last 28 days (STEPS steps, fresh each run),
# export it, and score both on the held-out 28 days with `restock evaluate`.
# Usage: benches/lm_finetune_vs_zeroshot.sh [SKUS=50] [STEPS=240] [OUT=/tmp/restock-ft]
# Environment: SEASON (the lag the model reads, default 7), CONTEXT (values read, default 112),
# WINDOW (fine-tune window, default 128), LR (default the train stage's).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
SKUS=${1:-50} STEPS=${2:-240} OUT=${3:-/tmp/restock-ft}
SEASON=${SEASON:-7} CONTEXT=${CONTEXT:-112} WINDOW=${WINDOW:-128} LRCFG=${LR:+, lr: $LR}
R="$PWD/target/debug/restock"
[ -x "$R" ] || cargo build --locked --bin restock
rm -rf "$OUT" && mkdir -p "$OUT"
L="file://$OUT/lake" S="sqlite://$OUT/state.db"
"$R" -q demo --skus "$SKUS" --lake "$L" --state "$S" --pipeline pipelines/nightly.yaml >/dev/null
# All days, and only the days without a stockout (censored sales are NULL there: masked in the
# context, skipped by the metrics).
for days in all uncensored; do
    value="CAST(units AS DOUBLE)"
    [ "$days" = uncensored ] && value="CASE WHEN censored THEN NULL ELSE CAST(units AS DOUBLE) END"
    "$R" query --lake "$L" --format parquet --output "$OUT/$days.parquet" \
        "SELECT concat(sku_id, '/', location_id) AS series_id, date AS ts, $value AS value FROM demand_daily ORDER BY 1, 2"
done
mkdir -p "$OUT/lake/raw/train_demand"
"$R" query --lake "$L" --format parquet --output "$OUT/lake/raw/train_demand/part-0.parquet" \
    "SELECT sku_id, location_id, date, units FROM demand_daily WHERE date <= (SELECT max(date) FROM demand_daily) - INTERVAL '28' DAY"
cat > "$OUT/ft.yaml" <<YAML
name: ft_eval
lake: $L
stages:
  - id: fine_tune
    kind: train
    inputs: { demand: raw/train_demand/ }
    outputs: [lm_model]
    config: { series: [sku_id, location_id], time: date, target: units, base: $PWD/models/small, season_length: $SEASON, steps: $STEPS, batch: 16, window: $WINDOW, eval_every: 20, patience: 2$LRCFG }
YAML
"$R" -q run "$OUT/ft.yaml" --state "$S"
"$R" query --lake "$L" "SELECT steps, best_step, registered, base_validation_loss, validation_loss FROM lm_model"
"$R" models --lake "$L" export lm_model --out "$OUT/tuned"
for m in models/small "$OUT/tuned"; do for days in all uncensored; do
    echo "== $m, $days days"
    "$R" evaluate --data "$OUT/$days.parquet" --horizon 28 --season "$SEASON" --methods seasonal_naive,lm --model "$m" --paths 20 --context "$CONTEXT"
done; done
