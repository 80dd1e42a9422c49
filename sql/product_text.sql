-- One text record per SKU for the forecasting language model: catalog fields plus review
-- statistics and the three most recent reviews.
WITH ranked AS (
    SELECT sku_id, rating, review_text,
           ROW_NUMBER() OVER (PARTITION BY sku_id ORDER BY review_date DESC, review_id) AS rn
    FROM reviews
),
agg AS (
    SELECT sku_id,
           COUNT(*) AS review_count,
           AVG(rating) AS avg_rating,
           STRING_AGG(CASE WHEN rn <= 3 THEN review_text END, ' | ') AS recent_reviews
    FROM ranked
    GROUP BY sku_id
)
SELECT c.sku_id, c.title, c.category, c.subcategory, c.brand, c.description, c.list_price,
       CAST(COALESCE(a.review_count, 0) AS BIGINT) AS review_count,
       ROUND(a.avg_rating, 2) AS avg_rating,
       a.recent_reviews,
       concat_ws(' | ', c.title, c.category || ' > ' || c.subcategory, c.description,
                 COALESCE(a.recent_reviews, '')) AS text
FROM catalog AS c
LEFT JOIN agg AS a ON a.sku_id = c.sku_id
