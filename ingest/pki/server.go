package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The server certificate's files in the CA directory.
const (
	// ServerCertFile is the listeners' certificate (PEM).
	ServerCertFile = "server.pem"
	// ServerKeyFile is its key (PKCS #8 PEM, mode 0600).
	ServerKeyFile = "server.key"
)

// serverRenewBefore is how long before its end a server certificate is
// issued again at start.
const serverRenewBefore = 30 * 24 * time.Hour

// ServerOptions says which names the server certificate holds.
type ServerOptions struct {
	// Names are extra DNS names or IP addresses, beside localhost,
	// 127.0.0.1, ::1 and the host name, which it always holds.
	Names []string
	// Validity is its lifetime (default DefaultServerValidity).
	Validity time.Duration
}

// ServerCertificate returns the TLS certificate of the MQTT and HTTPS
// listeners, issued by the CA for localhost, 127.0.0.1, ::1, the host
// name and opts.Names. The one kept in the CA directory
// (ServerCertFile, ServerKeyFile) is used while it is this CA's, holds
// every name and has more than 30 days left; otherwise a new one is
// issued and written there.
func (ca *CA) ServerCertificate(opts ServerOptions) (tls.Certificate, error) {
	dns, ips := serverNames(opts.Names)
	certPath, keyPath := filepath.Join(ca.dir, ServerCertFile), filepath.Join(ca.dir, ServerKeyFile)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && ca.serves(c, dns, ips) {
		return c, nil
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: dns[len(dns)-1], Organization: []string{"iotpipe"}},
		DNSNames:    dns,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	v := opts.Validity
	if v <= 0 {
		v = DefaultServerValidity
	}
	is, err := ca.issue(tmpl, v)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	if err := os.MkdirAll(ca.dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	if err := writeFileAtomic(keyPath, is.KeyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	if err := writeFileAtomic(certPath, is.CertPEM, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	ca.opts.Logger.Info("issued the server certificate", "path", certPath, "dns", dns, "ips", ips,
		"not_after", is.Certificate.NotAfter.UTC().Format(time.RFC3339))
	c, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	return c, nil
}

// serves reports whether c is this CA's, holds every name and has more
// than serverRenewBefore left.
func (ca *CA) serves(c tls.Certificate, dns []string, ips []net.IP) bool {
	if len(c.Certificate) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil || leaf.CheckSignatureFrom(ca.cert) != nil {
		return false
	}
	if ca.opts.Now().Add(serverRenewBefore).After(leaf.NotAfter) {
		return false
	}
	for _, d := range dns {
		if !slices.Contains(leaf.DNSNames, d) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

// serverNames splits the server's names into DNS names and IPs, the
// defaults first, each once; the host name is the last DNS name (the
// subject's common name).
func serverNames(extra []string) ([]string, []net.IP) {
	dns := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	add := func(n string) {
		if n == "" {
			return
		}
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			return
		}
		if !slices.Contains(dns, n) {
			dns = append(dns, n)
		}
	}
	for _, n := range extra {
		add(n)
	}
	if host, err := os.Hostname(); err == nil {
		if i := slices.Index(dns, host); i >= 0 {
			dns = slices.Delete(dns, i, i+1)
		}
		add(host)
	}
	return dns, ips
}
