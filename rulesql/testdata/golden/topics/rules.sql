-- Topic filters: + and #, an empty first level, '#' matching the parent level.
CREATE RULE plus AS SELECT topic(2) AS id FROM 'farm/+/temp';
CREATE RULE hash AS SELECT topic() AS t FROM 'farm/#';
CREATE RULE leading_slash AS SELECT topic(1) AS first, topic(2) AS second FROM '/topic/+';
CREATE RULE everything AS SELECT VALUE topic() FROM '#'
