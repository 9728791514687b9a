-- A filter with a webhook action: readings above 34.9 (0.45% of the raw
-- load's points, whose temperature climbs from 15.00 to 34.99 and
-- starts again; every latency probe's even point). The harness replaces
-- http://WEBHOOK with its receiver.
CREATE RULE alert_hot AS
SELECT *, clientid() AS device FROM '+/+/telemetry' WHERE temperature > 34.9
THEN webhook(url => 'http://WEBHOOK/hot');
