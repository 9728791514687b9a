-- Operators on mixed types: Int and Decimal, numeric Strings, Booleans as Strings.
SELECT i + d AS int_plus_dec, i + s AS int_plus_numstr, i + word AS int_plus_word, i * 2 AS int_times,
  i / 2 AS int_div, d / 2 AS dec_div, i / 0 AS div_zero, i % 3 AS int_mod, -i AS neg, -s AS neg_str,
  i = 7.0 AS int_eq_dec, s = 2.5 AS str_eq_num, word = 'abc' AS str_eq, i = word AS mixed_eq, i <> word AS mixed_ne,
  arr = [1, 2] AS arr_eq, obj = {'a': 1} AS obj_eq, n = null AS null_eq,
  s > 2 AS numstr_gt, word < 'abd' AS str_lt, b AND t AS bool_and, b OR false AS bool_or, t AND 'true' AS str_bool,
  NOT b AS not_b, NOT 'FALSE' AS not_str, NOT i AS not_int, i AND true AS int_and, 1 + 2 * 3 - 4 AS precedence,
  (1 + 2) * 3 AS parens, i != 8 AS bang_ne, i >= 7 AND i <= 7 AS between
FROM 'ops'
