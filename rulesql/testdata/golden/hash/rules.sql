-- Hash functions: hex digests of the string, CRC-32 as an Int.
SELECT md2(s) AS md2, md5(s) AS md5, sha1(s) AS sha1, sha224(s) AS sha224, sha256(s) AS sha256,
  sha384(s) AS sha384, sha512(s) AS sha512, crc32(s) AS crc32, md2('') AS md2_empty, md5(n) AS md5_num
FROM 'hash'
