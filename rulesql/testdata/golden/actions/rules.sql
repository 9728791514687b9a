-- Named rules with actions and ${} substitution templates.
CREATE RULE too_bright AS
SELECT lux, topic(3) AS house FROM 'greenhouse/+/+/lux' WHERE lux > 35000
THEN republish(topic => 'greenhouse/${topic(3)}/shade', qos => 1),
     webhook(url => 'https://hooks.example.com/lux?d=${clientid()}', headers => {'X-Lux': '${lux}', 'X-Static': 'yes'}),
     kafka(topic => 'alerts', key => '${clientid()}'),
     command(thing => '${clientid()}', payload => '{"shade": "close", "lux": ${lux}, "missing": "${nope}", "lit": "$${x}"}'),
     clickhouse(table => 'lux_alerts')
ERROR ACTION webhook(url => 'https://hooks.example.com/errors');

CREATE RULE no_actions AS SELECT lux FROM 'greenhouse/+/+/lux' WHERE lux < 10
