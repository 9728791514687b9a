-- The detector the benchmark's detection run scores: PEWMA with its
-- defaults on the wind profile's wind_speed (the simulator injects
-- spikes there and writes the ground truth).
CREATE RULE wind_spikes AS
SELECT device, seq, wind_speed, pewma(wind_speed) AS a FROM 'wind/+/telemetry' WHERE a.anomaly;
