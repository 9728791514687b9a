-- SELECT * and extra columns; an alias overrides an attribute of the same name.
CREATE RULE star AS SELECT * FROM 'star';
CREATE RULE star_extra AS SELECT *, topic() AS topic, a * 2 AS a FROM 'star';
CREATE RULE star_value AS SELECT VALUE * FROM 'star'
