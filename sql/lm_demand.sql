-- The demand history the forecasting language model trains on and reads: each SKU x location's
-- daily units with its known covariates, the promotion flag and its category's demand a year
-- earlier (category_last_year.sql). A day that ended out of stock sold less than its demand
-- (censored): its units are NULL here, so the model neither learns to predict them nor reads
-- them as low demand (a missing value is masked), and it forecasts demand, not stockouts.
SELECT d.sku_id, d.location_id, d.date,
       CASE WHEN d.censored THEN NULL ELSE d.units END AS units,
       d.promo, s.category_last_year
FROM demand AS d
LEFT JOIN products AS p ON p.sku_id = d.sku_id
LEFT JOIN season AS s ON s.category = p.category AND s.date = d.date
