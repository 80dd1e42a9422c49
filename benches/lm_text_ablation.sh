#!/usr/bin/env bash
# Text conditioning, as an ablation on cold-start SKUs of the demo lake. One SKU in four is made
# new: only its last COLD days before the held-out 28 exist. Two fine-tunes of models/small on the
# same data, steps and seed — one reading each SKU's product text (catalog + reviews, the demo's
# tokenizer), one without — are then scored on the cold-start series' 28 held-out days with
# `restock evaluate`: the text model with and without its text, the plain model, zero-shot,
# seasonal naive and ets.
# Usage: benches/lm_text_ablation.sh [SKUS=100] [STEPS=240] [COLD=21] [OUT=/tmp/restock-text] [LR=3e-4]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
SKUS=${1:-100} STEPS=${2:-240} COLD=${3:-21} OUT=${4:-/tmp/restock-text} LR=${5:-3e-4}
R="$PWD/target/debug/restock"
[ -x "$R" ] || cargo build --locked --bin restock
rm -rf "$OUT" && mkdir -p "$OUT"
L="file://$OUT/lake" S="sqlite://$OUT/state.db"
"$R" -q demo --skus "$SKUS" --lake "$L" --state "$S" --pipeline pipelines/nightly.yaml >/dev/null
COLD_SKU="CAST(substr(sku_id, 5) AS INT) % 4 = 0"
LAST="(SELECT max(date) FROM demand_daily)"
# Training data: warm SKUs up to the held-out month; cold SKUs only their last COLD days before it.
mkdir -p "$OUT/lake/raw/train_demand"
"$R" query --lake "$L" --format parquet --output "$OUT/lake/raw/train_demand/part-0.parquet" \
    "SELECT sku_id, location_id, date, units FROM demand_daily WHERE date <= $LAST - INTERVAL '28' DAY
       AND (NOT ($COLD_SKU) OR date > $LAST - INTERVAL '$((28 + COLD))' DAY)"
# Evaluation data: the cold-start series, COLD days of context + 28 held out, and their text.
"$R" query --lake "$L" --format parquet --output "$OUT/cold.parquet" \
    "SELECT concat(sku_id, '/', location_id) AS series_id, date AS ts, CAST(units AS DOUBLE) AS value FROM demand_daily
     WHERE $COLD_SKU AND date > $LAST - INTERVAL '$((28 + COLD))' DAY ORDER BY 1, 2"
"$R" query --lake "$L" --format parquet --output "$OUT/text.parquet" \
    "SELECT DISTINCT concat(d.sku_id, '/', d.location_id) AS series_id, p.text FROM demand_daily d JOIN product_text p ON d.sku_id = p.sku_id"
for variant in text plain; do
    text=""
    [ "$variant" = text ] && text=", text: { input: products, tokenizer: tokenizer, max_tokens: 32 }"
    cat > "$OUT/ft_$variant.yaml" <<YAML
name: ft_$variant
lake: $L
stages:
  - id: fine_tune
    kind: train
    inputs: { demand: raw/train_demand/, products: table:product_text, tokenizer: table:tokenizer }
    outputs: [lm_$variant]
    config: { series: [sku_id, location_id], time: date, target: units, base: $PWD/models/small, season_length: 7, steps: $STEPS, lr: $LR, batch: 16, window: 128, eval_every: 40, patience: 4$text }
YAML
    [ "$variant" = plain ] && sed -i 's/, products: table:product_text, tokenizer: table:tokenizer//' "$OUT/ft_$variant.yaml"
    start=$(date +%s)
    "$R" -q run "$OUT/ft_$variant.yaml" --state "$S"
    echo "fine-tune ($variant): $(( $(date +%s) - start )) s"
    "$R" query --lake "$L" "SELECT steps, best_step, registered, base_validation_loss, validation_loss FROM lm_$variant"
    "$R" models --lake "$L" export "lm_$variant" --out "$OUT/$variant"
done
ev() { "$R" evaluate --data "$OUT/cold.parquet" --horizon 28 --season 7 --paths 20 --context 112 "$@"; }
echo "== cold-start series: $COLD days of history, 28 held out"
echo "-- baselines and zero-shot models/small"; ev --methods seasonal_naive,ets,lm --model models/small
echo "-- fine-tuned without text";             ev --methods lm --model "$OUT/plain"
echo "-- fine-tuned with text, text withheld"; ev --methods lm --model "$OUT/text"
echo "-- fine-tuned with text, reading it";    ev --methods lm --model "$OUT/text" --text "$OUT/text.parquet"
