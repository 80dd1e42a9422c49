# Shared by the LM ablation benches (sourced, not run): the environment, a fresh demo lake in
# $OUT, and `finetune NAME INPUTS EXTRA`, which fine-tunes models/small with a `train` stage on
# raw/train_demand/ (+ INPUTS, e.g. ", products: table:product_text"; EXTRA is appended to its
# config), prints the losses and exports the model to $OUT/NAME. Needs SKUS, STEPS, OUT, LR;
# EVAL_EVERY (40) and PATIENCE (4) set early stopping; BASE another model folder than models/small;
# SEED the fine-tunes' seed (0); RESTOCK another restock binary (e.g. a copy, so that a build
# beside the bench does not change it part-way).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh >/dev/null
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
R=${RESTOCK:-$PWD/target/debug/restock}
BASE=$(realpath "${BASE:-models/small}")
[ -x "$R" ] || cargo build --locked --bin restock
L="file://$OUT/lake" S="sqlite://$OUT/state.db"
# REUSE=1 starts from the demo lake an earlier run of the same SKUS left in $OUT (a copy of it
# as the demo's nightly run left it: generating takes minutes); the fine-tunes start afresh.
if [ -n "${REUSE:-}" ] && [ -d "$OUT/demo/lake" ]; then
    rm -rf "$OUT/lake" "$OUT/state.db" && cp -r "$OUT/demo/lake" "$OUT/demo/state.db" "$OUT/"
else
    rm -rf "$OUT" && mkdir -p "$OUT/demo"
    "$R" -q demo --skus "$SKUS" --lake "$L" --state "$S" --pipeline pipelines/nightly.yaml >/dev/null
    cp -r "$OUT/lake" "$OUT/state.db" "$OUT/demo/"
fi
mkdir -p "$OUT/lake/raw/train_demand"   # after the demo, which regenerates raw/
LAST="(SELECT max(date) FROM demand_daily)"

finetune() {
    local name=$1 inputs=$2 extra=$3 start
    cat > "$OUT/ft_$name.yaml" <<YAML
name: ft_$name
lake: $L
stages:
  - id: fine_tune
    kind: train
    inputs: { demand: raw/train_demand/$inputs }
    outputs: [lm_$name]
    config: { series: [sku_id, location_id], time: date, target: units, base: $BASE, season_length: 7, steps: $STEPS, lr: $LR, batch: 16, window: 128, eval_every: ${EVAL_EVERY:-40}, patience: ${PATIENCE:-4}, seed: ${SEED:-0}$extra }
YAML
    start=$(date +%s)
    "$R" -q run "$OUT/ft_$name.yaml" --state "$S"
    echo "fine-tune ($name): $(( $(date +%s) - start )) s"
    "$R" query --lake "$L" "SELECT steps, best_step, registered, base_validation_loss, validation_loss FROM lm_$name"
    "$R" models --lake "$L" export "lm_$name" --out "$OUT/$name"
}
