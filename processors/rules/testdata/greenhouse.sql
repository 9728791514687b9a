-- Close the shade of a greenhouse when the light is too strong: a QoS 1
-- command to greenhouse/<id>/shade (the republish executor delivers it
-- through iotpipe.outbound; the device answers on the reply topic).
CREATE RULE greenhouse_shade AS
SELECT * FROM 'greenhouse/+/lux' WHERE lux > 35000
THEN command(thing => '${topic(2)}', topic => 'greenhouse/${topic(2)}/shade', payload => '{"shade": "close", "lux": ${lux}}');
