CREATE RULE rare_client AS
SELECT sha1(clientid()) AS h, lower(topic(1)) AS site FROM '+/+/telemetry' WHERE startswith(clientid(), 'nobody-');
