package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names the executor sets on every request.
const (
	// HeaderSignature carries "sha256=<hex>", the HMAC-SHA256 of
	// "<timestamp>.<body>" under the shared secret.
	HeaderSignature = "X-Iotpipe-Signature"
	// HeaderTimestamp carries the attempt's time in Unix seconds, the
	// timestamp the signature covers.
	HeaderTimestamp = "X-Iotpipe-Timestamp"
	// HeaderIdempotencyKey carries the action's idempotency key, the same
	// on every attempt and every redelivery of one firing.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// signaturePrefix names the signature scheme in HeaderSignature.
const signaturePrefix = "sha256="

// Errors returned by Verify and VerifyRequest.
var (
	// ErrNoSignature means the request carries no signature to check.
	ErrNoSignature = errors.New("webhook: no sha256 signature")
	// ErrBadSignature means no signature matched the secret, timestamp and
	// body.
	ErrBadSignature = errors.New("webhook: signature does not match")
	// ErrStaleTimestamp means the timestamp is missing, malformed or
	// outside the allowed clock skew.
	ErrStaleTimestamp = errors.New("webhook: timestamp missing or outside tolerance")
)

// Sign returns the HeaderSignature value for body sent at timestamp (the
// HeaderTimestamp value, decimal Unix seconds).
func Sign(secret []byte, timestamp string, body []byte) string {
	return signaturePrefix + hex.EncodeToString(mac(secret, timestamp, body))
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a HeaderSignature value against the secret, the
// HeaderTimestamp value and the raw body. The header may list several
// comma-separated signatures (as during a secret rotation); one match is
// enough. The comparison is constant-time. Verify does not judge the
// timestamp's age: see VerifyRequest.
func Verify(secret []byte, header, timestamp string, body []byte) error {
	want := mac(secret, timestamp, body)
	found := false
	for _, part := range strings.Split(header, ",") {
		part = strings.TrimSpace(part)
		hexSig, ok := strings.CutPrefix(part, signaturePrefix)
		if !ok {
			continue
		}
		found = true
		got, err := hex.DecodeString(hexSig)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	if !found {
		return ErrNoSignature
	}
	return ErrBadSignature
}

// maxVerifyBody bounds the body VerifyRequest reads.
const maxVerifyBody = 10 << 20

// VerifyRequest reads r's body (at most 10 MiB) and checks its signature
// and timestamp: the timestamp must be within tolerance of now, either way
// (tolerance <= 0 skips that check). It returns the body, which the caller
// decodes only when err is nil.
func VerifyRequest(r *http.Request, secret []byte, now time.Time, tolerance time.Duration) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxVerifyBody+1))
	if err != nil {
		return nil, fmt.Errorf("read webhook body: %w", err)
	}
	if len(body) > maxVerifyBody {
		return nil, fmt.Errorf("webhook body over %d bytes", maxVerifyBody)
	}
	ts := r.Header.Get(HeaderTimestamp)
	if tolerance > 0 {
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return body, ErrStaleTimestamp
		}
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return body, ErrStaleTimestamp
		}
	}
	return body, Verify(secret, r.Header.Get(HeaderSignature), ts, body)
}
