-- 0002: the source id of every derived row: the record's iot.src header,
-- "<events partition>/<events offset>/<processor>/<seq>" (or
-- "<partition>/t<deadline>/<processor>/<seq>" for a timer's output). A
-- processor that produces a record again after a crash gives it the same
-- id at a new offset; the sink stores it once (it drops an id the table
-- holds and makes the insert deduplication token from the ids). Rows
-- stored before this migration have an empty src.
ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS src String CODEC(ZSTD(1));
ALTER TABLE aggregates ADD COLUMN IF NOT EXISTS src String CODEC(ZSTD(1));
ALTER TABLE rule_outputs ADD COLUMN IF NOT EXISTS src String CODEC(ZSTD(1));
