# Sourced by the LM benches (after `cd` to the repo): LM_DEMAND, the CTEs that give the published
# demo lake's demand as pipelines/lm_nightly.yaml feeds it to the model — `lm`: demand_daily
# with `category_last_year` joined (sql/category_last_year.sql, sql/lm_demand.sql).
LM_DEMAND="WITH demand AS (SELECT * FROM demand_daily), products AS (SELECT * FROM product_text),
season AS (
$(cat sql/category_last_year.sql)
), lm AS (
$(cat sql/lm_demand.sql)
)"
