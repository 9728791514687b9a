-- Anomaly detection with PEWMA's defaults (alpha0 0.95, beta 0.5, T 30,
-- threshold 0.002): state read and written for every point.
CREATE RULE pewma_fast AS
SELECT temperature, seq, pewma(temperature) AS a FROM '+/+/telemetry' WHERE a.anomaly;
