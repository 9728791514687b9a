CREATE RULE rare_seq AS
SELECT clientid() AS device, seq, timestamp() AS at FROM '+/+/telemetry' WHERE seq = 123456789
THEN kafka(topic => 'bench.rare', key => '${clientid()}');
