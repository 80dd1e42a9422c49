-- The known covariates of the days after the history, per SKU (every location shares them): the
-- promotion calendar's planned days and the category's demand a year earlier
-- (category_last_year.sql), which is known a year ahead. The `future:` input of `forecast_lm`.
WITH last AS (SELECT MAX(date) AS day FROM demand),
planned AS (SELECT DISTINCT sku_id, date FROM promotions WHERE promo)
SELECT p.sku_id, s.date, pr.sku_id IS NOT NULL AS promo, s.category_last_year
FROM products AS p
JOIN season AS s ON s.category = p.category
CROSS JOIN last
LEFT JOIN planned AS pr ON pr.sku_id = p.sku_id AND pr.date = s.date
WHERE s.date > last.day
