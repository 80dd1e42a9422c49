# Sourced by the LM benches (after `cd` to the repo): LM_DEMAND, the CTEs that give the published
# demo lake's demand as pipelines/lm_nightly.yaml feeds it to the model — `lm`: demand_daily
# with stockout days' units NULL and `category_last_year` joined (sql/category_last_year.sql,
# sql/lm_demand.sql) — and `sold`: the same with every day's units as sold. DEMAND_WHERE
# (default TRUE) keeps only some of demand_daily's rows (a bench's cold-start SKUs' history).
LM_DEMAND="WITH demand AS (SELECT * FROM demand_daily WHERE ${DEMAND_WHERE:-TRUE}), products AS (SELECT * FROM product_text),
season AS (
$(cat sql/category_last_year.sql)
), lm AS (
$(cat sql/lm_demand.sql)
), sold AS (
    SELECT lm.sku_id, lm.location_id, lm.date, d.units, lm.promo, lm.category_last_year
    FROM lm JOIN demand_daily AS d ON d.sku_id = lm.sku_id AND d.location_id = lm.location_id AND d.date = lm.date
)"
