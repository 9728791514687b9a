-- cast, isNull, isUndefined.
SELECT cast(s AS Int) AS s_int, cast(d AS Int) AS d_int, cast(i AS Decimal) AS i_dec, cast(s AS Decimal) AS s_dec,
  cast(b AS Int) AS b_int, cast(b AS Decimal) AS b_dec, cast(i AS String) AS i_str, cast(d AS String) AS d_str,
  cast(i AS Boolean) AS i_bool, cast(zero AS Boolean) AS zero_bool, cast('TRUE' AS Boolean) AS s_bool,
  cast('abc' AS Int) AS bad_int, cast(n AS Int) AS null_int,
  isNull(n) AS isnull_n, isNull(missing) AS isnull_missing, isNull(i) AS isnull_i,
  isUndefined(missing) AS isundef_missing, isUndefined(n) AS isundef_null
FROM 'conv'
