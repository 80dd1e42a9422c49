-- Clean order lines: one row per sale_id with a known SKU and a valid quantity; missing prices
-- repaired from the catalog; the latest late correction applied; returns netted per line.
WITH dedup AS (
    -- Feeds re-deliver rows: keep one row per sale_id. Re-deliveries are copies, so any copy will
    -- do; MAX() prefers a copy that has a price. The input is declared `sorted_by: [sale_id]`,
    -- so this aggregate streams (one group held at a time) rather than hashing millions of ids;
    -- it is also much cheaper than ROW_NUMBER() or DISTINCT ON over one-row partitions.
    SELECT sale_id,
           MAX(sale_date) AS sale_date, MAX(sku_id) AS sku_id, MAX(location_id) AS location_id,
           MAX(quantity) AS quantity, MAX(unit_price) AS unit_price, BOOL_OR(promo) AS promo,
           MAX(channel) AS channel
    FROM sales
    -- Partition pruning: only year folders up to the end of the run's interval are read.
    WHERE year <= date_part('year', DATE '{{ interval_end | date }}')
      AND sale_date < DATE '{{ interval_end | date }}'
    GROUP BY sale_id
),
latest_correction AS (
    SELECT sale_id, corrected_quantity
    FROM (
        SELECT sale_id, corrected_quantity,
               ROW_NUMBER() OVER (PARTITION BY sale_id ORDER BY corrected_at DESC) AS rn
        FROM corrections
    ) AS c
    WHERE rn = 1
),
returned AS (
    SELECT sale_id, SUM(quantity) AS returned_units
    FROM returns
    GROUP BY sale_id
),
fixed AS (
    SELECT d.sale_id, d.sale_date, d.sku_id, d.location_id,
           COALESCE(c.corrected_quantity, d.quantity) AS quantity,
           COALESCE(r.returned_units, 0) AS returned_units,
           COALESCE(d.unit_price, cat.list_price) AS unit_price,
           d.unit_price IS NULL AS price_repaired,
           c.sale_id IS NOT NULL AS corrected,
           d.promo, d.channel
    -- Join order matters: the stage turns DataFusion's join reordering off (it cannot size the
    -- deduplicated lines), so the left side of each join is its hash table. Small tables come
    -- first and the deduplicated lines stream past them.
    FROM returned AS r
    RIGHT JOIN (
        latest_correction AS c
        RIGHT JOIN (
            catalog AS cat
            -- An inner join on the catalog drops null and unknown SKUs.
            JOIN dedup AS d ON cat.sku_id = d.sku_id
        ) ON c.sale_id = d.sale_id
    ) ON r.sale_id = d.sale_id
    WHERE d.location_id IS NOT NULL
)
SELECT sale_id, sale_date, sku_id, location_id,
       CAST(quantity AS BIGINT) AS quantity,
       CAST(LEAST(returned_units, quantity) AS BIGINT) AS returned,
       CAST(quantity - LEAST(returned_units, quantity) AS BIGINT) AS net_quantity,
       unit_price, price_repaired, corrected, promo, channel
FROM fixed
-- Negative quantities are entry errors: returns arrive in their own feed.
WHERE quantity >= 0
