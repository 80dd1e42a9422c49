#!/usr/bin/env bash
# The language-model pipeline (pipelines/lm_nightly.yaml) at demo size: fine-tune the shipped
# checkpoint on 5,000 SKU × location series of 730 days, then forecast 28 days with N sample
# paths each. Prints each LM stage's wall time, sample paths per second, and the run's wall time
# and peak RSS, for each N given (default 20).
# Usage (after `scripts/demo` built the lake): benches/lm_nightly.sh [PATHS ...]
set -euo pipefail
cd "$(dirname "$0")/.."
R=${RESTOCK:-target/debug/restock}
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-$(ls -d .venv/lib/python3*/site-packages/torch/lib)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/pipelines" && ln -s "$PWD/models" "$work/models" && ln -s "$PWD/sql" "$work/sql"
series=$($R -q query --format csv "SELECT COUNT(DISTINCT sku_id || '/' || location_id) FROM demand_daily" | tail -1)
echo "series: $series  cores: $(nproc)  restock: $R"
for paths in "${@:-20}"; do
  sed "s/      paths: 20/      paths: $paths/" pipelines/lm_nightly.yaml > "$work/pipelines/lm_nightly.yaml"
  /usr/bin/time -f "%e %M" -o "$work/time" $R -q run "$work/pipelines/lm_nightly.yaml" --force
  read -r wall rss < "$work/time"
  run=$($R runs | grep -o '[0-9]\{8\}-[0-9]\{6\}-[0-9a-z]\{4\}' | head -1)
  show=$($R show "$run")
  secs() { echo "$show" | awk -v s="$1" -F'┆' '$1 ~ s { d=$4; gsub(/ /,"",d); if (d ~ /ms$/) { sub(/ms$/,"",d); d/=1000 } else sub(/s$/,"",d); print d }'; }
  ft=$(secs fine_tune); fc=$(secs forecast_lm)
  awk -v p="$paths" -v n="$series" -v ft="$ft" -v fc="$fc" -v w="$wall" -v r="$rss" 'BEGIN {
    printf "paths %3d: fine_tune %6.1f s  forecast_lm %6.1f s (%7.0f paths/s, 28 steps)  run %6.1f s  peak RSS %.2f GB\n", p, ft, fc, n*p/fc, w, r/1048576 }'
done
