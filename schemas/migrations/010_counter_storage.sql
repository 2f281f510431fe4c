-- 010_counter_storage.sql: keep the counters' table compact while every transaction updates its rows.
-- Each writing transaction updates the same few hundred count_terms rows (its slot's terms). With
-- room left on every page an update can stay on its page (HOT: n is not indexed, so no index entry
-- is added, and page pruning reclaims the old version without waiting for a vacuum); autovacuum
-- visits the table after a fixed number of changes rather than a fraction of a table whose live size
-- hardly grows. A count reads one index entry and one heap row per slot: a table that is mostly dead
-- versions spreads those rows over many pages (docs/BENCHMARKS.md, "Counters": 41,155 live rows in
-- 413-490 MB after bench/query.py's one-statement load of 1M seven-pair objects).
ALTER TABLE count_terms SET (fillfactor = 50,
                             autovacuum_vacuum_scale_factor = 0,
                             autovacuum_vacuum_threshold = 2000,
                             autovacuum_vacuum_cost_delay = 0,
                             autovacuum_analyze_scale_factor = 0.05);
