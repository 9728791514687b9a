-- Rarely matching filters and transforms (four rules): evaluated on every
-- point, firing almost never.
CREATE RULE rare_fahrenheit AS
SELECT upper(clientid()) AS device, temperature * 1.8 + 32 AS fahrenheit FROM '+/+/telemetry'
WHERE temperature > 99
THEN clickhouse(table => 'rule_outputs');
