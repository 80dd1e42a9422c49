-- Dense daily demand per SKU x location: one row per inventory snapshot day (so zero-sale days
-- exist), with units, returns, price, promo, and stockout flags. A day that ends with nothing on
-- hand sold all it could: its observed units are a lower bound on demand (censored).
WITH daily_sales AS (
    SELECT sku_id, location_id, sale_date,
           SUM(quantity) AS units,
           SUM(returned) AS returned_units,
           SUM(net_quantity) AS net_units,
           SUM(quantity * unit_price) / NULLIF(SUM(quantity), 0) AS avg_price
    FROM sales_clean
    GROUP BY sku_id, location_id, sale_date
)
SELECT i.sku_id, i.location_id, i.snapshot_date AS date,
       CAST(COALESCE(s.units, 0) AS BIGINT) AS units,
       CAST(COALESCE(s.returned_units, 0) AS BIGINT) AS returned_units,
       CAST(COALESCE(s.net_units, 0) AS BIGINT) AS net_units,
       s.avg_price,
       p.sku_id IS NOT NULL AS promo,
       i.on_hand, i.on_order,
       COALESCE(LAG(i.on_hand) OVER (PARTITION BY i.sku_id, i.location_id ORDER BY i.snapshot_date) <= 0, false) AS stockout,
       i.on_hand <= 0 AS censored
-- Daily sales (the smaller side) first: with join reordering off it is the hash table, and the
-- inventory snapshots stream past it.
FROM daily_sales AS s
RIGHT JOIN inventory AS i
       ON s.sku_id = i.sku_id AND s.location_id = i.location_id AND s.sale_date = i.snapshot_date
-- The promotion calendar, not the sales rows: a promotion day with no sale is still one.
LEFT JOIN (SELECT DISTINCT sku_id, date FROM promotions) AS p
       ON p.sku_id = i.sku_id AND p.date = i.snapshot_date
WHERE i.year <= date_part('year', DATE '{{ interval_end | date }}')
  AND i.snapshot_date < DATE '{{ interval_end | date }}'
