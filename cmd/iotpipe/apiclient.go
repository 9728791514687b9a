package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/iotpipe/iotpipe/ingest/pki"
)

// apiFlags are the flags of the commands that call the HTTP API.
type apiFlags struct {
	api, token, dataDir, caFile string
	json                        bool
	timeout                     time.Duration
}

const apiFlagsHelp = `API flags (every command):
  --api URL        the iotpipe HTTP API (default $IOTPIPE_API, else http://127.0.0.1:8080)
  --token SECRET   API token (default $IOTPIPE_TOKEN, else <data-dir>/admin.token, written on the first start)
  --data-dir DIR   data directory of iotpipe run (default data, or $IOTPIPE_DATA_DIR)
  --cafile FILE    CA certificate to verify an https --api with (default <data-dir>/pki/ca.pem)
  --json           print the API's JSON answer
  --timeout D      give up after D (default 30s)
`

func (f *apiFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.api, "api", sqlEnvOr("IOTPIPE_API", "http://127.0.0.1:8080"), "the iotpipe HTTP API")
	fs.StringVar(&f.token, "token", os.Getenv("IOTPIPE_TOKEN"), "API token")
	fs.StringVar(&f.dataDir, "data-dir", sqlEnvOr("IOTPIPE_DATA_DIR", "data"), "data directory of iotpipe run")
	fs.StringVar(&f.caFile, "cafile", "", "CA certificate of an https --api")
	fs.BoolVar(&f.json, "json", false, "print JSON")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "timeout")
}

// apiClient calls the HTTP API with a bearer token.
type apiClient struct {
	base, token string
	hc          *http.Client
}

// client builds the API client the flags describe.
func (f *apiFlags) client() (*apiClient, error) {
	u, err := url.Parse(f.api)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--api %q: want http://host:port or https://host:port", f.api)
	}
	tok := f.token
	if tok == "" {
		path := filepath.Join(f.dataDir, AdminTokenFile)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("no API token: pass --token or set IOTPIPE_TOKEN (iotpipe printed one on its first start, kept in %s: %w)", path, err)
		}
		tok = strings.TrimSpace(string(b))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if u.Scheme == "https" {
		caFile := f.caFile
		if caFile == "" {
			caFile = filepath.Join(f.dataDir, "pki", pki.CACertFile)
		}
		tc, err := pki.ClientTLS(caFile, "", "")
		if err != nil {
			return nil, fmt.Errorf("--cafile: %w (the CA that signed the API's certificate)", err)
		}
		tr.TLSClientConfig = tc
	}
	return &apiClient{base: strings.TrimRight(f.api, "/"), token: tok, hc: &http.Client{Transport: tr, Timeout: f.timeout}}, nil
}

// apiError is an error answer of the API.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// do sends method path with in as JSON (when not nil) and decodes the
// answer into out (when not nil). The raw answer is returned too.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("cannot reach the iotpipe API at %s: is iotpipe running? (--api names another)", c.base)
		}
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var doc struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(raw, &doc) != nil || doc.Message == "" {
			doc.Message = strings.TrimSpace(string(raw))
		}
		return raw, &apiError{Status: resp.StatusCode, Message: doc.Message}
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("answer of %s %s: %w", method, path, err)
		}
	}
	return raw, nil
}
