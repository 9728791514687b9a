-- Every string function.
SELECT chr(65) AS chr, concat(a, '-', b) AS concat, concat(arr, [3]) AS concat_arr, concat(a, 1) AS concat_num,
  decode('aGVsbG8=', 'base64') AS decode, encode(a, 'base64') AS encode,
  endswith(a, 'lo') AS endswith, indexof(a, 'l') AS indexof, indexof(a, 'z') AS indexof_none,
  length(a) AS length, length(arr) AS length_arr, length('héllo') AS length_utf8, lower(b) AS lower,
  lpad(a, 3) AS lpad, ltrim(pad) AS ltrim, numbytes('héllo') AS numbytes,
  regexp_matches(a, 'l+') AS regexp_matches, regexp_matches(a, '^x') AS regexp_nomatch,
  regexp_replace(a, '(l+)', '[$1]') AS regexp_replace, regexp_substr(serial, '[0-9]+') AS regexp_substr,
  replace(a, 'l', 'L') AS replace, rpad(a, 2) AS rpad, rtrim(pad) AS rtrim,
  startswith(a, 'he') AS startswith, substring(digits, 2) AS substring, substring(digits, 1, 3) AS substring2,
  substring(digits, 3, 1) AS substring_empty, substring(123456, 2) AS substring_num, substring(digits, -1) AS substring_neg,
  trim(pad) AS trim, upper(a) AS upper, upper(missing) AS upper_missing
FROM 'str'
