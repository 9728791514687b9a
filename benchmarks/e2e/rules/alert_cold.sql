-- A filter with a republish action: readings below 15.05 (0.25% of the
-- raw load's points; every latency probe's odd point).
CREATE RULE alert_cold AS
SELECT temperature, seq, ts, topic(2) AS device FROM '+/+/telemetry' WHERE temperature < 15.05
THEN republish(topic => 'alerts/${topic(2)}/cold', qos => 0);
