#!/usr/bin/env bash
# The `forecast` stage at demo size: every SKU × location series of the demo lake's published
# demand_daily (5,000 × 730 days after `scripts/demo`), copied to a scratch lake, forecast 28
# days by each METHOD given (default: ets ensemble ensemble+lm lm; `+lm` adds the shipped
# `models/small` as a member, zero-shot, 20 paths, context 112). Prints each stage's wall time,
# the run's peak RSS, and what an ensemble kept (chosen on the held-out tails).
# Usage (after `scripts/demo` built the lake): benches/forecast_stage.sh [METHOD ...]
set -euo pipefail
cd "$(dirname "$0")/.."
R=$PWD/${RESTOCK:-target/debug/restock}
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-$(ls -d .venv/lib/python3*/site-packages/torch/lib)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lake/raw/demand" && ln -s "$PWD/models" "$work/models"
$R -q query --format parquet --output "$work/lake/raw/demand/part-0.parquet" "SELECT sku_id, location_id, date, units FROM demand_daily"
cd "$work"

echo "cores: $(nproc)  restock: $R"
for m in "${@:-ets ensemble ensemble+lm lm}"; do
  for method in $m; do
    case $method in
      *+lm) config="method: ${method%+lm}, model: models/small, paths: 20, context: 112," ;;
      lm) config="method: lm, model: models/small, paths: 20, context: 112," ;;
      *) config="method: $method," ;;
    esac
    cat > p.yaml <<YAML
name: forecast_stage
lake: file://./lake
stages:
  - { id: fc, kind: forecast, inputs: { demand: raw/demand/ }, outputs: [forecasts], config: { $config series: [sku_id, location_id], time: date, target: units, season_length: 7, horizon: 28 } }
YAML
    /usr/bin/time -f "%e %M" -o time $R -q run p.yaml --force
    read -r wall rss < time
    run=$($R runs | grep -o '[0-9]\{8\}-[0-9]\{6\}-[0-9a-z]\{4\}' | head -1)
    kept=$($R show "$run" | grep -o "the ensemble forecast with [^(]*" || true)
    printf "%-12s run %6.1f s  peak RSS %.2f GB  %s\n" "$method" "$wall" "$(echo "$rss" | awk '{print $1/1048576}')" "$kept"
  done
done
