-- 005_numbers.sql: numbers that the API used to respell get the spelling their producer sent.
--
-- Before this release the API validated a POST with jansson and published jansson's re-serialization,
-- which writes a non-integer number as 17 significant digits of the nearest double: 19.99 was stored
-- as 19.989999999999998, 0.1 as 0.10000000000000001. Now the API publishes the producer's own bytes,
-- and the filters compare numbers exactly (jsonb numerics), so such a row would no longer be found by
-- 19.99, which is what its producer sent.
--
-- What is rewritten: in objects.data, each pair's number value that is exactly what C's %.17g makes
-- of a double (a normal one, 1e-307 to 1e308) whose shortest round-trip spelling is a different
-- decimal - it becomes that shortest spelling (PostgreSQL's float8 output: 19.99, 0.1, 1e-07 ->
-- 0.0000001). It is the same double, so a reader that reads doubles sees the same value.
-- Not touched: every other number (1.50, 100.0 - jansson's 1e2, equal to 100 for filters anyway -,
-- 19.989999999999997, which is not %.17g's output), strings, keys, and what cannot be undone (an
-- integer beyond int64 the old API rounded to 12345678901234567000 stays so).
-- The cost of the choice: a producer that published straight to the topic a 17-digit decimal that is
-- exactly such an image, meaning that decimal and not the double, gets the shorter spelling. A writer
-- that prints doubles with 17 digits (jansson, %.17g) meant the double, which is kept; one that means
-- decimals rarely writes exactly the 17-digit image of a double. After this migration nothing is
-- rewritten any more: rows written later keep any spelling, including 17 digits, exactly.
--
-- One statement over the rows whose data has a number of 17 or more characters; updated_at and the
-- source version columns are left alone (the value a reader of doubles sees did not change).

SET LOCAL extra_float_digits = 1; -- float8 text is the shortest spelling that reads back the same double

WITH fixed AS (
    SELECT o.object_id,
           jsonb_agg(CASE WHEN s.shortest IS NULL THEN e.p
                          ELSE jsonb_set(e.p, '{value}', to_jsonb(s.shortest)) END ORDER BY e.n) AS data,
           bool_or(s.shortest IS NOT NULL) AS changed
    FROM objects o
    CROSS JOIN LATERAL jsonb_array_elements(o.data) WITH ORDINALITY AS e(p, n)
    CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(e.p->'value') = 'number' AND length(e.p->>'value') >= 17
                                    THEN (e.p->>'value')::numeric END AS v) a
    CROSS JOIN LATERAL (SELECT CASE WHEN abs(a.v) BETWEEN 1e-307 AND 1e308 THEN a.v::float8 END AS d) b
    CROSS JOIN LATERAL (SELECT CASE WHEN b.d IS NOT NULL
                                         AND a.v = to_char(b.d, '9.9999999999999999EEEE')::numeric
                                         AND a.v <> b.d::text::numeric
                                    THEN b.d::text::numeric END AS shortest) s
    WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(o.data) x
                  WHERE jsonb_typeof(x->'value') = 'number' AND length(x->>'value') >= 17)
    GROUP BY o.object_id
)
UPDATE objects o SET data = f.data
FROM fixed f
WHERE o.object_id = f.object_id AND f.changed;
