-- 0001: the tables iotpipe writes. Every row carries its source
-- (partition, offset) in the Kafka topic it came from, so a table's rows
-- can be checked against the log: count() = uniqExact(partition, offset).
-- {{ttl "col"}} becomes the configured TTL clause (or nothing), and
-- {{.DedupWindow}} the number of recent insert blocks remembered for
-- insert deduplication.

-- Every publish on iotpipe.events.
CREATE TABLE IF NOT EXISTS telemetry
(
    thing       LowCardinality(String),
    topic       String CODEC(ZSTD(1)),
    client_id   String CODEC(ZSTD(1)),
    principal   LowCardinality(String),
    qos         UInt8,
    retain      Bool,
    received_at DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    event_time  DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    payload     String CODEC(ZSTD(3)),
    metrics     Map(LowCardinality(String), Float64) CODEC(ZSTD(1)),
    partition   Int32 CODEC(ZSTD(1)),
    offset      Int64 CODEC(DoubleDelta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toDate(received_at)
ORDER BY (thing, received_at)
{{ttl "received_at"}}
SETTINGS non_replicated_deduplication_window = {{.DedupWindow}};

-- Lifecycle events on iotpipe.events: connected, disconnected,
-- subscribed, unsubscribed.
CREATE TABLE IF NOT EXISTS presence
(
    thing       LowCardinality(String),
    event       LowCardinality(String),
    client_id   String CODEC(ZSTD(1)),
    principal   LowCardinality(String),
    topic       String CODEC(ZSTD(1)),
    received_at DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    payload     String CODEC(ZSTD(3)),
    partition   Int32 CODEC(ZSTD(1)),
    offset      Int64 CODEC(DoubleDelta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toDate(received_at)
ORDER BY (thing, received_at)
{{ttl "received_at"}}
SETTINGS non_replicated_deduplication_window = {{.DedupWindow}};

-- The shadow changelog (iotpipe.shadows): one row per accepted change.
-- ReplacingMergeTree(version) folds the same change read twice (a replay
-- of the compacted topic) into one row.
CREATE TABLE IF NOT EXISTS shadows
(
    thing      LowCardinality(String),
    shadow     LowCardinality(String),
    version    UInt64,
    updated_at DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    state      String CODEC(ZSTD(3)),
    metadata   String CODEC(ZSTD(3)),
    deleted    Bool,
    partition  Int32 CODEC(ZSTD(1)),
    offset     Int64 CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toDate(updated_at)
ORDER BY (thing, shadow, updated_at, version)
{{ttl "updated_at"}}
SETTINGS non_replicated_deduplication_window = {{.DedupWindow}};

-- Anomaly detector results (iotpipe.anomalies).
CREATE TABLE IF NOT EXISTS anomalies
(
    thing       LowCardinality(String),
    detected_at DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    rule        LowCardinality(String),
    metric      LowCardinality(String),
    value       Float64 CODEC(ZSTD(1)),
    score       Float64 CODEC(ZSTD(1)),
    payload     String CODEC(ZSTD(3)),
    partition   Int32 CODEC(ZSTD(1)),
    offset      Int64 CODEC(DoubleDelta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toDate(detected_at)
ORDER BY (thing, detected_at)
{{ttl "detected_at"}}
SETTINGS non_replicated_deduplication_window = {{.DedupWindow}};

-- Closed window results (iotpipe.aggregates).
CREATE TABLE IF NOT EXISTS aggregates
(
    thing        LowCardinality(String),
    rule         LowCardinality(String),
    window_start DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    window_end   DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    `values`     Map(LowCardinality(String), Float64) CODEC(ZSTD(1)),
    payload      String CODEC(ZSTD(3)),
    partition    Int32 CODEC(ZSTD(1)),
    offset       Int64 CODEC(DoubleDelta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toDate(window_start)
ORDER BY (thing, window_start)
{{ttl "window_start"}}
SETTINGS non_replicated_deduplication_window = {{.DedupWindow}};

-- Outputs of rules whose action is "clickhouse" (iotpipe.actions).
CREATE TABLE IF NOT EXISTS rule_outputs
(
    thing     LowCardinality(String),
    fired_at  DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    rule      LowCardinality(String),
    key       String CODEC(ZSTD(1)),
    payload   String CODEC(ZSTD(3)),
    metrics   Map(LowCardinality(String), Float64) CODEC(ZSTD(1)),
    partition Int32 CODEC(ZSTD(1)),
    offset    Int64 CODEC(DoubleDelta, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toDate(fired_at)
ORDER BY (thing, fired_at)
{{ttl "fired_at"}}
SETTINGS non_replicated_deduplication_window = {{.DedupWindow}};
