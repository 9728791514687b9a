package webhook

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"thing":"gh-1","lux":40000}`)
	ts := "1700000000"
	good := Sign(secret, ts, body)
	tests := []struct {
		name    string
		secret  []byte
		header  string
		ts      string
		body    []byte
		wantErr error
	}{
		{"valid", secret, good, ts, body, nil},
		{"valid among several", secret, "sha256=00ff, " + good, ts, body, nil},
		{"wrong secret", []byte("other"), good, ts, body, ErrBadSignature},
		{"body changed", secret, good, ts, []byte(`{"thing":"gh-1","lux":40001}`), ErrBadSignature},
		{"timestamp changed", secret, good, "1700000001", body, ErrBadSignature},
		{"no header", secret, "", ts, body, ErrNoSignature},
		{"other scheme", secret, "sha1=abcd", ts, body, ErrNoSignature},
		{"not hex", secret, "sha256=zz", ts, body, ErrBadSignature},
		{"truncated", secret, good[:len(good)-2], ts, body, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.header, tt.ts, tt.body)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestSignKnownVector(t *testing.T) {
	// Computed independently: python3 -c "import hmac,hashlib;
	// print(hmac.new(b'key', b'1700000000.{}', hashlib.sha256).hexdigest())"
	got := Sign([]byte("key"), "1700000000", []byte("{}"))
	want := "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
	if got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

func TestVerifyRequest(t *testing.T) {
	secret := []byte("k")
	body := []byte(`{"a":1}`)
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name    string
		ts      int64
		sig     func(ts string) string
		wantErr error
	}{
		{"fresh", now.Unix() - 10, func(ts string) string { return Sign(secret, ts, body) }, nil},
		{"slightly ahead", now.Unix() + 10, func(ts string) string { return Sign(secret, ts, body) }, nil},
		{"stale", now.Unix() - 3600, func(ts string) string { return Sign(secret, ts, body) }, ErrStaleTimestamp},
		{"bad signature", now.Unix(), func(ts string) string { return Sign([]byte("x"), ts, body) }, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
			ts := strconv.FormatInt(tt.ts, 10)
			r.Header.Set(HeaderTimestamp, ts)
			r.Header.Set(HeaderSignature, tt.sig(ts))
			got, err := VerifyRequest(r, secret, now, 5*time.Minute)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyRequest = %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("body = %q, want %q", got, body)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add([]byte("k"), "sha256=00", "1", []byte("{}"))
	f.Add([]byte(""), "sha256=,sha256=zz", "", []byte(""))
	f.Fuzz(func(t *testing.T, secret []byte, header, ts string, body []byte) {
		_ = Verify(secret, header, ts, body) // must not panic
		if err := Verify(secret, Sign(secret, ts, body), ts, body); err != nil {
			t.Fatalf("Verify(Sign(...)) = %v", err)
		}
		if err := Verify(secret, Sign(secret, ts, body), ts, append(body, 'x')); err == nil {
			t.Fatal("Verify accepted a changed body")
		}
	})
}
