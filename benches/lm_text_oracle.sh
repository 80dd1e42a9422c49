#!/usr/bin/env bash
# How much could product text tell about a cold-start SKU of the demo lake? An upper bound, no
# model: each cold series' 28 held-out days (those of `benches/lm_text_ablation.sh`: a launched
# product's 28 days after its first COLD) forecast as its COLD-day mean times a factor fitted
# on the held-out days themselves (in-sample, so optimistic) — one factor for all, one per
# weekend/weekday, one per category, one per life cycle as the title states it (limited edition,
# everyday staple, neither), and per life cycle × weekend. The relative MAE each reaches is what
# knowing that much more is worth at best.
# Usage: benches/lm_text_oracle.sh [OUT=/tmp/restock-text] [COLD=7]
# (OUT: the folder `benches/lm_text_ablation.sh` left, whose lake it reads.)
set -euo pipefail
OUT=${1:-/tmp/restock-text} COLD=${2:-7}
cd "$(dirname "$0")/.."
source scripts/env.sh >/dev/null
set +u
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
R="$PWD/target/debug/restock"
[ -d "$OUT/lake" ] || { echo "no lake in $OUT: run benches/lm_text_ablation.sh first" >&2; exit 1; }
echo "| factor per | relative MAE | days |"
# (`everything`: one group of all the days.)
for by in everything weekend category life "life, weekend"; do
    "$R" query --lake "file://$OUT/lake" "
WITH launch AS (SELECT sku_id, min(date) AS first FROM demand_daily GROUP BY sku_id),
cold AS (SELECT * FROM launch WHERE CAST(substr(sku_id, 5) AS INT) % 2 = 0
         AND first > (SELECT min(date) FROM demand_daily)
         AND first <= (SELECT max(date) FROM demand_daily) - INTERVAL '$((28 + COLD))' DAY),
x AS (
    SELECT concat(d.sku_id, '/', d.location_id) AS s, CAST(d.units AS DOUBLE) AS v, p.category,
           CASE WHEN p.title LIKE '%Limited Edition%' THEN 'limited'
                WHEN p.title LIKE '%Everyday Staple%' THEN 'staple' ELSE 'steady' END AS life,
           date_part('dow', d.date) IN (0, 6) AS weekend, d.date >= c.first + INTERVAL '$COLD' DAY AS held
    FROM demand_daily AS d JOIN product_text AS p ON d.sku_id = p.sku_id JOIN cold AS c ON c.sku_id = d.sku_id
    WHERE d.date < c.first + INTERVAL '$((28 + COLD))' DAY),
context AS (SELECT s, avg(v) AS m FROM x WHERE NOT held GROUP BY s),
h AS (SELECT x.*, context.m, 'all' AS everything FROM x JOIN context USING (s) WHERE held),
f AS (SELECT $by, coalesce(sum(v) / nullif(sum(m), 0), 1.0) AS factor FROM h GROUP BY $by)
SELECT '$by' AS factor_per, round(sum(abs(v - m * factor)) / sum(abs(v)), 4) AS relative_mae, count(*) AS days
FROM h JOIN f USING ($by)" | grep -v "^+\|factor_per"
done
