CREATE RULE rare_path AS
SELECT concat(topic(1), '-', topic(2)) AS path, round(temperature) AS t FROM '+/+/telemetry'
WHERE mod(seq, 100000) = 99999
THEN clickhouse(table => 'rule_outputs');
