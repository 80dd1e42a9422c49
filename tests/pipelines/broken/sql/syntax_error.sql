-- A SQL file with a syntax error on line 4.
SELECT 1 AS one,
       2 AS two
FROM (SELECT 1 AS z) WHERE AND z = 1
