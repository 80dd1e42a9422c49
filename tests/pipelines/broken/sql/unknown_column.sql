-- Refers to a column the input does not have (line 3).
SELECT sku_id,
       quantityy AS units
FROM sales
