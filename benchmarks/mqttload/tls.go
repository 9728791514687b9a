package mqttload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
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
	pem, err := os.ReadFile(f.ca)
	if err != nil {
		return nil, fmt.Errorf("--cafile: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--cafile %s: no PEM certificate in it", f.ca)
	}
	conf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if f.cert != "" {
		c, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		conf.Certificates = []tls.Certificate{c}
	}
	return conf, nil
}
