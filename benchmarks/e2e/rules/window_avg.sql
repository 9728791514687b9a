-- A tumbling window per device: mean, maximum and count every 10 s.
CREATE RULE window_avg AS
SELECT clientid() AS device, avg(temperature) AS mean, max(temperature) AS hi, count(*) AS n
FROM '+/+/telemetry' GROUP BY TUMBLE(10 SECONDS), clientid();
