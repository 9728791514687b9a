-- 0003: the current state of every shadow, one row per (thing, shadow),
-- deleted shadows left out: SELECT ... FROM shadows_current answers
-- fleet questions without argMax (shadows keeps every change, and FINAL
-- folds only repeats of one change).
--
-- shadows_latest holds each shadow's latest change, filled from every
-- insert into shadows by shadows_latest_mv. A delete keeps the shadow's
-- version (as in AWS), so the order of changes is the revision
-- version * 2 + deleted: a delete replaces the update it deletes, and the
-- next update (version + 1) replaces the delete. It is not partitioned by
-- time (ReplacingMergeTree replaces within a partition only) and never
-- expires: a shadow's state stays current however old it is.
CREATE TABLE IF NOT EXISTS shadows_latest
(
    thing      LowCardinality(String),
    shadow     LowCardinality(String),
    version    UInt64,
    updated_at DateTime64(3, 'UTC'),
    state      String CODEC(ZSTD(3)),
    metadata   String CODEC(ZSTD(3)),
    deleted    Bool,
    revision   UInt64
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY (thing, shadow);

CREATE MATERIALIZED VIEW IF NOT EXISTS shadows_latest_mv TO shadows_latest AS
SELECT thing, shadow, version, updated_at, state, metadata, deleted, version * 2 + deleted AS revision
FROM shadows;

-- The changes stored before this migration (stored twice if the sink
-- inserted some meanwhile: the table folds them).
INSERT INTO shadows_latest
SELECT thing, shadow, version, updated_at, state, metadata, deleted, version * 2 + deleted AS revision
FROM shadows;

CREATE VIEW IF NOT EXISTS shadows_current AS
SELECT thing, shadow, version, updated_at, state, metadata
FROM shadows_latest FINAL
WHERE NOT deleted;
