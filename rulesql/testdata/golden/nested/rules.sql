-- Nested attributes, array indexes, nested SELECTs, dotted aliases, literals.
SELECT state.reported.temp AS temp, state.reported.temp, readings[1] AS second, readings[1].v AS second_v,
  state.reported.tags[0] AS tag0, readings[9] AS beyond, state.nope.deeper AS nope,
  (SELECT VALUE v FROM readings WHERE v > 1) AS big, (SELECT v * 10 AS v10 FROM readings) AS scaled,
  state.reported.temp AS out.inner.temp, 'x' AS out.inner.label,
  {'lat': get(pos, 0), 'lng': get(pos, 1)} AS where_am_i, [1, 'two', true, null, {'k': [2]}] AS literal,
  "dashed-name" AS dashed
FROM 'nested'
