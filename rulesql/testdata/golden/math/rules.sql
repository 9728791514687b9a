-- Every math and bitwise function, on Ints, Decimals and numeric Strings.
SELECT abs(i) AS abs_i, abs(d) AS abs_d, abs(s) AS abs_s, abs(b) AS abs_b,
  acos(0) AS acos, asin(0) AS asin, atan(1) AS atan, atan2(1, 0) AS atan2,
  ceil(d) AS ceil, ceil(i) AS ceil_i, cos(0) AS cos, cosh(0) AS cosh, exp(0) AS exp,
  floor(d) AS floor, ln(1) AS ln, log(100) AS log, mod(8, 3) AS mod, mod(-8, 3) AS mod_neg,
  mod(7.5, 2) AS mod_d, nanvl(i, 0) AS nanvl, nanvl('NaN', 7) AS nanvl_nan, power(2, 10) AS power,
  rand() >= 0 AND rand() < 1 AS rand_ok, remainder(8, 3) AS remainder, round(d) AS round,
  round(2.5) AS round_half, round(-2.5) AS round_neg, sign(i) AS sign, sign(0) AS sign0, sign(s) AS sign_s,
  sin(0) AS sin, sinh(0) AS sinh, sqrt(16) AS sqrt, sqrt(-1) AS sqrt_neg, tan(0) AS tan, tanh(0) AS tanh,
  trunc(2.3456, 2) AS trunc, trunc(d, 0) AS trunc0,
  bitand(13, 5) AS bitand, bitor(8, 5) AS bitor, bitxor(13, 5) AS bitxor, bitnot(13) AS bitnot,
  bitand(d, 1) AS bitand_dec, acos(2) AS acos_out_of_range, abs(missing) AS abs_missing
FROM 'math/+'
