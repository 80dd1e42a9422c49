-- Each category's demand one year (52 weeks, so weekdays line up) earlier, pooled over all its
-- SKUs and locations and averaged over the 15 days around that date: a known covariate for the
-- forecasting language model (pipelines/lm_nightly.yaml). It carries the category's yearly
-- season into a horizon up to a year ahead, for a SKU launched last week as much as for one
-- with years of history; one series' own count a year ago is too noisy to show it. The model
-- reads a level relative to its median over each window, so the units need no scaling. One row
-- per category and date, from a year after the history starts to a year after it ends; dates
-- without a year of history have none (the model reads "nothing known").
WITH daily AS (
    SELECT p.category, d.date, CAST(SUM(d.units) AS DOUBLE) AS units
    FROM demand AS d
    JOIN products AS p ON d.sku_id = p.sku_id
    GROUP BY p.category, d.date
)
SELECT category,
       CAST(date + INTERVAL '364' DAY AS DATE) AS date,
       AVG(units) OVER (PARTITION BY category ORDER BY date
                        RANGE BETWEEN INTERVAL '7' DAY PRECEDING AND INTERVAL '7' DAY FOLLOWING) AS category_last_year
FROM daily
