-- A second, slower and stricter detector on the same field.
CREATE RULE pewma_slow AS
SELECT temperature, seq, pewma(temperature, 0.99, 0.5, 60, 0.0005) AS a FROM '+/+/telemetry' WHERE a.anomaly;
