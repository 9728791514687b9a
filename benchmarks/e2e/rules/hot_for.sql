-- A duration timer: above 34 for 5 s (the raw load's temperature stays
-- above 34 for 5% of its cycle, so the timer starts and stops all the
-- time and rarely fires).
CREATE RULE hot_for AS
SELECT clientid() AS device, temperature FROM '+/+/telemetry' WHERE temperature > 34 FOR 5 SECONDS;
