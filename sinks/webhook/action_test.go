package webhook

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNewRequestFromFixture(t *testing.T) {
	value, err := os.ReadFile("testdata/action_webhook.json")
	if err != nil {
		t.Fatal(err)
	}
	a, err := decodeAction(value)
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRequest(&a, []byte("ignored"), []byte("default"))
	if err != nil {
		t.Fatal(err)
	}
	// The body is the payload's bytes exactly: big integers and HTML
	// characters untouched.
	if want := `{"thing":"gh-7","event":"disconnected","big":12345678901234567890,"html":"<b>&</b>"}`; string(r.body) != want {
		t.Errorf("body = %s, want %s", r.body, want)
	}
	want := http.Header{
		"Authorization": {"Bearer abc"},
		"X-Tags":        {"a", "b"},
		"X-Count":       {"12345678901234567890"},
	}
	if d := cmp.Diff(want, r.headers); d != "" {
		t.Errorf("headers (-want +got):\n%s", d)
	}
	if r.key != "3/1042/offline-alert/0" || r.target != "https://hooks.example.com:8443" || string(r.secret) != "per-rule" {
		t.Errorf("key, target, secret = %q, %q, %q", r.key, r.target, r.secret)
	}
}

func TestNewRequest(t *testing.T) {
	tests := []struct {
		name      string
		value     string
		recKey    string
		secret    string
		wantErr   string
		timeout   time.Duration
		wantKey   string
		target    string
		body      string
		useSecret string
	}{
		{name: "minimal", value: `{"key":"k1","type":"webhook","params":{"url":"http://h/x"},"payload":[1,2]}`,
			wantKey: "k1", target: "http://h:80", body: "[1,2]", secret: "opt", useSecret: "opt"},
		{name: "record key when action has none", value: `{"type":"webhook","params":{"url":"HTTPS://Host.Example/x"}}`, recKey: "rk",
			wantKey: "rk", target: "https://host.example:443", body: "null"},
		{name: "no key at all", value: `{"type":"webhook","params":{"url":"http://h/"}}`, wantErr: "no idempotency key"},
		{name: "no url", value: `{"key":"k","type":"webhook","params":{}}`, wantErr: `no "url"`},
		{name: "url not a string", value: `{"key":"k","type":"webhook","params":{"url":5}}`, wantErr: `no "url"`},
		{name: "relative url", value: `{"key":"k","type":"webhook","params":{"url":"/hook"}}`, wantErr: "absolute http"},
		{name: "ftp url", value: `{"key":"k","type":"webhook","params":{"url":"ftp://h/x"}}`, wantErr: "absolute http"},
		{name: "headers not an object", value: `{"key":"k","type":"webhook","params":{"url":"http://h/","headers":"x"}}`, wantErr: "want an object"},
		{name: "header value object", value: `{"key":"k","type":"webhook","params":{"url":"http://h/","headers":{"A":{}}}}`, wantErr: "want a string"},
		{name: "header name invalid", value: `{"key":"k","type":"webhook","params":{"url":"http://h/","headers":{"A B":"x"}}}`, wantErr: "valid HTTP token"},
		{name: "header value newline", value: `{"key":"k","type":"webhook","params":{"url":"http://h/","headers":{"A":"x\r\nB: y"}}}`, wantErr: "control characters"},
		{name: "key with newline", value: `{"key":"k\n","type":"webhook","params":{"url":"http://h/"}}`, wantErr: "valid header value"},
		{name: "secret not a string", value: `{"key":"k","type":"webhook","params":{"url":"http://h/","secret":1}}`, wantErr: `"secret"`},
		{name: "timeout in seconds", value: `{"key":"k","type":"webhook","params":{"url":"http://h/","timeout":2.5}}`,
			wantKey: "k", target: "http://h:80", body: "null", timeout: 2500 * time.Millisecond},
		{name: "timeout zero", value: `{"key":"k","type":"webhook","params":{"url":"http://h/","timeout":0}}`, wantErr: `"timeout" is 0`},
		{name: "timeout too long", value: `{"key":"k","type":"webhook","params":{"url":"http://h/","timeout":301}}`, wantErr: "want seconds in (0, 300]"},
		{name: "timeout not a number", value: `{"key":"k","type":"webhook","params":{"url":"http://h/","timeout":"5s"}}`, wantErr: "want a number of seconds"},
		{name: "reserved headers ignored", value: `{"key":"k","type":"webhook","params":{"url":"http://h:9/","headers":{"idempotency-key":"forged","Content-Type":"text/plain"}}}`,
			wantKey: "k", target: "http://h:9", body: "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := decodeAction([]byte(tt.value))
			if err != nil {
				t.Fatal(err)
			}
			r, err := newRequest(&a, []byte(tt.recKey), []byte(tt.secret))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.key != tt.wantKey || r.target != tt.target || string(r.body) != tt.body || string(r.secret) != tt.useSecret || r.timeout != tt.timeout {
				t.Errorf("got key %q target %q body %s secret %q timeout %v", r.key, r.target, r.body, r.secret, r.timeout)
			}
			if len(r.headers) != 0 {
				t.Errorf("headers = %v, want none", r.headers)
			}
		})
	}
}

func TestDecodeActionRejects(t *testing.T) {
	for _, v := range []string{``, `nope`, `{"key":1}`, `{"key":"a"} {"key":"b"}`, `[]`} {
		if _, err := decodeAction([]byte(v)); err == nil {
			t.Errorf("decodeAction(%q) succeeded, want an error", v)
		}
	}
}

func FuzzNewRequest(f *testing.F) {
	if v, err := os.ReadFile("testdata/action_webhook.json"); err == nil {
		f.Add(v, []byte("k"))
	}
	f.Add([]byte(`{"type":"webhook","params":{"url":"http://[::1]:80/x","headers":{"a":["b",1,true]}}}`), []byte(""))
	f.Add([]byte(`{"payload":`), []byte("k"))
	f.Fuzz(func(t *testing.T, value, recKey []byte) {
		a, err := decodeAction(value)
		if err != nil {
			return
		}
		r, err := newRequest(&a, recKey, nil)
		if err != nil {
			return
		}
		if !strings.HasPrefix(r.target, "http://") && !strings.HasPrefix(r.target, "https://") {
			t.Fatalf("target %q is not http(s)", r.target)
		}
		if r.key == "" || !validHeaderValue(r.key) {
			t.Fatalf("key %q is not a usable header value", r.key)
		}
		if _, err := http.NewRequest(http.MethodPost, r.url, nil); err != nil {
			t.Fatalf("accepted url %q that net/http rejects: %v", r.url, err)
		}
		for k := range r.headers {
			if reserved[k] {
				t.Fatalf("reserved header %q passed through", k)
			}
		}
	})
}
