package mqttload

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/iotpipe/iotpipe/ingest/pki"
)

// tlsFiles are the command's --cafile, --cert and --key.
type tlsFiles struct{ ca, cert, key string }

// config is the TLS configuration the files describe, nil (plain TCP)
// when none is given. A client certificate needs --cafile: without it
// the connection would be TLS with the system roots, which never hold
// iotpipe's CA.
func (f tlsFiles) config() (*tls.Config, error) {
	if f.ca == "" && f.cert == "" && f.key == "" {
		return nil, nil
	}
	if f.ca == "" {
		return nil, errors.New("--cert and --key need --cafile (the CA that signed the broker's certificate)")
	}
	if (f.cert == "") != (f.key == "") {
		return nil, errors.New("--cert and --key go together")
	}
	c, err := pki.ClientTLS(f.ca, f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("--cafile, --cert, --key: %w", err)
	}
	return c, nil
}
