-- Non-JSON payloads: attributes are Undefined; encode(*, 'base64') gives the bytes.
CREATE RULE raw AS SELECT encode(*, 'base64') AS data, temp FROM 'bin/#';
CREATE RULE raw_where AS SELECT VALUE topic() FROM 'bin/#' WHERE temp > 1
