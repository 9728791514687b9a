-- IoT context functions.
SELECT topic() AS topic, topic(1) AS t1, topic(2) AS t2, topic(9) AS t9, clientid() AS clientid,
  principal() AS principal, timestamp() AS ts, length(traceid()) AS traceid_len,
  length(newuuid()) AS uuid_len, newuuid() <> newuuid() AS uuid_differs,
  parse_time('yyyy-MM-dd''T''HH:mm:ss.SSSZ', timestamp()) AS iso,
  parse_time('yyyy-MM-dd HH:mm', timestamp(), 'America/New_York') AS ny,
  time_to_epoch('2025-11-22 12:00:00', 'yyyy-MM-dd HH:mm:ss') AS epoch,
  get(arr, 1) AS get_arr, get(obj, 'k') AS get_obj, get(arr, 5) AS get_out,
  get_thing_shadow('lamp-1') AS shadow
FROM 'ctx/#'
