-- pewma(): per-thing state; WHERE may use the alias of a stateful item.
CREATE RULE detect AS
SELECT temperature, pewma(temperature, 0.95, 0.5, 3, 0.002) AS a FROM 'sensors/#' WHERE a.anomaly
THEN kafka(topic => 'iotpipe.anomalies', key => '${clientid()}');
CREATE RULE track AS
SELECT pewma(temperature, 0.95, 0.5, 3).t AS points, pewma(temperature).mean AS m FROM 'sensors/#'
