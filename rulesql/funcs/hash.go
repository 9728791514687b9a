package funcs

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"hash/crc32"

	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

func hashImpl(h func() hash.Hash) Impl {
	return func(_ *env.Ctx, a []any) any {
		b, ok := bytesArg(a[0])
		if !ok {
			return value.Undefined
		}
		x := h()
		x.Write(b)
		return hex.EncodeToString(x.Sum(nil))
	}
}

func bytesArg(v any) ([]byte, bool) {
	if b, ok := v.([]byte); ok {
		return b, true
	}
	s, ok := value.ToString(v)
	return []byte(s), ok
}

func hashFuncs() []*Func {
	return []*Func{
		{Name: "md2", Min: 1, Max: 1, Doc: "MD2 hash as lower-case hex", Example: "md2('hello') = 'a9046c73e00331af68917d3804f70655'",
			Impl: func(_ *env.Ctx, a []any) any {
				b, ok := bytesArg(a[0])
				if !ok {
					return value.Undefined
				}
				s := md2Sum(b)
				return hex.EncodeToString(s[:])
			}},
		{Name: "md5", Min: 1, Max: 1, Doc: "MD5 hash as lower-case hex", Example: "md5('hello') = '5d41402abc4b2a76b9719d911017c592'", Impl: hashImpl(md5.New)},
		{Name: "sha1", Min: 1, Max: 1, Doc: "SHA-1 hash as lower-case hex", Example: "sha1('hello') = 'aaf4c61d...'", Impl: hashImpl(sha1.New)},
		{Name: "sha224", Min: 1, Max: 1, Doc: "SHA-224 hash as lower-case hex", Example: "sha224('hello') = 'ea09ae9c...'", Impl: hashImpl(sha256.New224)},
		{Name: "sha256", Min: 1, Max: 1, Doc: "SHA-256 hash as lower-case hex", Example: "sha256('hello') = '2cf24dba...'", Impl: hashImpl(sha256.New)},
		{Name: "sha384", Min: 1, Max: 1, Doc: "SHA-384 hash as lower-case hex", Example: "sha384('hello') = '59e17874...'", Impl: hashImpl(sha512.New384)},
		{Name: "sha512", Min: 1, Max: 1, Doc: "SHA-512 hash as lower-case hex", Example: "sha512('hello') = '9b71d224...'", Impl: hashImpl(sha512.New)},
		{Name: "crc32", Min: 1, Max: 1, Doc: "CRC-32 (IEEE) checksum as an Int", Example: "crc32('hello') = 907060870",
			Impl: func(_ *env.Ctx, a []any) any {
				b, ok := bytesArg(a[0])
				if !ok {
					return value.Undefined
				}
				return int64(crc32.ChecksumIEEE(b))
			}},
	}
}

// md2Sum computes MD2 (RFC 1319), which Go's standard library lacks.
func md2Sum(msg []byte) [16]byte {
	s := md2S()
	n := 16 - len(msg)%16
	data := make([]byte, len(msg)+n, len(msg)+n+16)
	copy(data, msg)
	for i := len(msg); i < len(data); i++ {
		data[i] = byte(n)
	}
	var c [16]byte
	var l byte
	for i := 0; i < len(data); i += 16 {
		for j := range 16 {
			c[j] ^= s[data[i+j]^l]
			l = c[j]
		}
	}
	data = append(data, c[:]...)
	var x [48]byte
	for i := 0; i < len(data); i += 16 {
		for j := range 16 {
			x[16+j] = data[i+j]
			x[32+j] = x[16+j] ^ x[j]
		}
		var t byte
		for j := range 18 {
			for k := range 48 {
				x[k] ^= s[t]
				t = x[k]
			}
			t += byte(j)
		}
	}
	var out [16]byte
	copy(out[:], x[:16])
	return out
}

// md2S returns the MD2 substitution table (digits of pi).
func md2S() *[256]byte {
	return &[256]byte{
		41, 46, 67, 201, 162, 216, 124, 1, 61, 54, 84, 161, 236, 240, 6, 19,
		98, 167, 5, 243, 192, 199, 115, 140, 152, 147, 43, 217, 188, 76, 130, 202,
		30, 155, 87, 60, 253, 212, 224, 22, 103, 66, 111, 24, 138, 23, 229, 18,
		190, 78, 196, 214, 218, 158, 222, 73, 160, 251, 245, 142, 187, 47, 238, 122,
		169, 104, 121, 145, 21, 178, 7, 63, 148, 194, 16, 137, 11, 34, 95, 33,
		128, 127, 93, 154, 90, 144, 50, 39, 53, 62, 204, 231, 191, 247, 151, 3,
		255, 25, 48, 179, 72, 165, 181, 209, 215, 94, 146, 42, 172, 86, 170, 198,
		79, 184, 56, 210, 150, 164, 125, 182, 118, 252, 107, 226, 156, 116, 4, 241,
		69, 157, 112, 89, 100, 113, 135, 32, 134, 91, 207, 101, 230, 45, 168, 2,
		27, 96, 37, 173, 174, 176, 185, 246, 28, 70, 97, 105, 52, 64, 126, 15,
		85, 71, 163, 35, 221, 81, 175, 58, 195, 92, 249, 206, 186, 197, 234, 38,
		44, 83, 13, 110, 133, 40, 132, 9, 211, 223, 205, 244, 65, 129, 77, 82,
		106, 220, 55, 200, 108, 193, 171, 250, 36, 225, 123, 8, 12, 189, 177, 74,
		120, 136, 149, 139, 227, 99, 232, 109, 233, 203, 213, 254, 59, 0, 29, 57,
		242, 239, 183, 14, 102, 88, 208, 228, 166, 119, 114, 248, 235, 117, 75, 10,
		49, 68, 80, 180, 143, 237, 31, 26, 219, 153, 141, 51, 159, 17, 131, 20,
	}
}
