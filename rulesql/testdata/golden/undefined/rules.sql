-- Undefined is left out of outputs; a WHERE that is Undefined does not fire.
CREATE RULE undefined_columns AS
SELECT a, missing, missing.deep AS deep, a + missing AS sum, upper(missing) AS up, [a, missing] AS arr,
  {'x': missing, 'y': a} AS obj, null AS explicit_null
FROM 'undef';
CREATE RULE undefined_where AS
SELECT a FROM 'undef' WHERE missing > 1;
CREATE RULE undefined_where_not AS
SELECT a FROM 'undef' WHERE NOT (missing > 1);
CREATE RULE false_and_undefined AS
SELECT a FROM 'undef' WHERE NOT (a > 100 AND missing > 1);
CREATE RULE select_value_undefined AS
SELECT VALUE missing FROM 'undef'
