package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// The files of a CA directory.
const (
	// CACertFile is the CA certificate (PEM): what devices give as their
	// CA file to verify iotpipe's server certificate.
	CACertFile = "ca.pem"
	// CAKeyFile is the CA's private key (PKCS #8 PEM, mode 0600).
	CAKeyFile = "ca.key"
)

// Default lifetimes.
const (
	// DefaultCAValidity is the lifetime of a new CA certificate.
	DefaultCAValidity = 20 * 365 * 24 * time.Hour
	// DefaultDeviceValidity is the lifetime of an issued device
	// certificate.
	DefaultDeviceValidity = 2 * 365 * 24 * time.Hour
	// DefaultServerValidity is the lifetime of an issued server
	// certificate; it is issued again at start within 30 days of its end.
	DefaultServerValidity = 365 * 24 * time.Hour
)

// clockSkew backdates NotBefore so a device whose clock is a little
// behind accepts a certificate issued just now.
const clockSkew = 5 * time.Minute

// CAOptions configures LoadOrCreateCA. The zero value of a field means
// its documented default.
type CAOptions struct {
	// CommonName is the subject common name of a new CA (default
	// "iotpipe CA <host name>").
	CommonName string
	// Validity is the lifetime of a new CA certificate (default
	// DefaultCAValidity).
	Validity time.Duration
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// Logger receives a line when the CA is created or its key file is
	// readable by others (default slog.Default()).
	Logger *slog.Logger
}

func (o *CAOptions) defaults() {
	if o.CommonName == "" {
		host, _ := os.Hostname()
		o.CommonName = "iotpipe CA " + host
	}
	if o.Validity <= 0 {
		o.Validity = DefaultCAValidity
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// CA is iotpipe's own certificate authority: an ECDSA P-256 key and a
// self-signed certificate kept under a directory. It issues device
// certificates (CN = thing name, client authentication) and the server
// certificate of the MQTT and HTTPS listeners.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  crypto.Signer
	opts CAOptions
}

// LoadOrCreateCA loads the CA under dir, or creates it there (directory
// 0700, key 0600) when dir holds none. A key without its certificate
// (a start interrupted between the two writes) gets a new certificate.
func LoadOrCreateCA(dir string, opts CAOptions) (*CA, error) {
	opts.defaults()
	ca := &CA{dir: dir, opts: opts}
	keyPath, certPath := filepath.Join(dir, CAKeyFile), filepath.Join(dir, CACertFile)
	key, err := readKey(keyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ca, ca.create()
	case err != nil:
		return nil, fmt.Errorf("iotpipe CA: %w", err)
	}
	if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		opts.Logger.Warn("the CA key is readable by other users: chmod 600 it", "path", keyPath, "mode", fi.Mode().Perm().String())
	}
	ca.key = key
	data, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		opts.Logger.Warn("CA key without its certificate: issuing the CA certificate again", "path", certPath)
		return ca, ca.selfSign()
	}
	if err != nil {
		return nil, fmt.Errorf("iotpipe CA: %w", err)
	}
	certs, err := ParsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("iotpipe CA certificate %s: %w", certPath, err)
	}
	c := certs[0]
	if !samePublicKey(c.PublicKey, key.Public()) {
		return nil, fmt.Errorf("iotpipe CA: %s does not belong to the key %s (restore the pair, or move both away to create a new CA)", certPath, keyPath)
	}
	if opts.Now().After(c.NotAfter) {
		return nil, fmt.Errorf("iotpipe CA certificate %s expired at %s (move %s away to create a new CA, then issue device certificates again)", certPath, c.NotAfter.UTC().Format(time.RFC3339), dir)
	}
	ca.cert = c
	return ca, nil
}

func (ca *CA) create() error {
	if err := os.MkdirAll(ca.dir, 0o700); err != nil {
		return fmt.Errorf("iotpipe CA: create %s: %w", ca.dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("iotpipe CA: generate key: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(ca.dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return fmt.Errorf("iotpipe CA: %w", err)
	}
	ca.key = key
	if err := ca.selfSign(); err != nil {
		return err
	}
	ca.opts.Logger.Info("created iotpipe's CA", "dir", ca.dir, "subject", ca.cert.Subject.CommonName,
		"not_after", ca.cert.NotAfter.UTC().Format(time.RFC3339), "id", ID(ca.cert.Raw))
	return nil
}

// selfSign issues the CA certificate for ca.key and writes it.
func (ca *CA) selfSign() error {
	now := ca.opts.Now()
	serial, err := newSerial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: ca.opts.CommonName, Organization: []string{"iotpipe"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(ca.opts.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ca.key.Public(), ca.key)
	if err != nil {
		return fmt.Errorf("iotpipe CA: self-sign: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("iotpipe CA: parse own certificate: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(ca.dir, CACertFile), EncodePEM(der), 0o644); err != nil {
		return fmt.Errorf("iotpipe CA: %w", err)
	}
	ca.cert = c
	return nil
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertificatePEM returns the CA certificate as PEM.
func (ca *CA) CertificatePEM() []byte { return EncodePEM(ca.cert.Raw) }

// Dir returns the directory the CA is kept in.
func (ca *CA) Dir() string { return ca.dir }

// IssueRequest says what device certificate to issue.
type IssueRequest struct {
	// CommonName is the subject's common name: the thing name.
	CommonName string
	// Validity is the certificate's lifetime (default
	// DefaultDeviceValidity); it never outlives the CA.
	Validity time.Duration
}

// Issued is a newly issued key and certificate.
type Issued struct {
	// Certificate is the issued certificate.
	Certificate *x509.Certificate
	// ID is its certificate id (see ID).
	ID string
	// CertPEM is the certificate as PEM.
	CertPEM []byte
	// KeyPEM is its private key (PKCS #8 PEM): it exists only here.
	KeyPEM []byte
}

// Issue makes a new ECDSA P-256 key and a certificate for it, signed by
// the CA, for TLS client authentication with the subject CN
// req.CommonName.
func (ca *CA) Issue(req IssueRequest) (*Issued, error) {
	if req.CommonName == "" {
		return nil, fmt.Errorf("%w: a device certificate needs a common name (the thing name)", ErrInvalid)
	}
	v := req.Validity
	if v <= 0 {
		v = DefaultDeviceValidity
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: req.CommonName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl, v)
}

// issue fills tmpl's serial and validity, makes a key and signs.
func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (*Issued, error) {
	now := ca.opts.Now()
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue %q: generate key: %w", tmpl.Subject.CommonName, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue %q: %w", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue %q: parse: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &Issued{Certificate: c, ID: ID(der), CertPEM: EncodePEM(der), KeyPEM: keyPEM}, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// readKey reads a PEM private key (PKCS #8 or SEC 1 EC) from path.
func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKey(data, path)
}

func parseKey(data []byte, path string) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	var key any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", path, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T cannot sign", path, key)
	}
	return s, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ae, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ae.Equal(b)
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// equalPEM reports whether the file at path holds exactly data.
func equalPEM(path string, data []byte) bool {
	old, err := os.ReadFile(path)
	return err == nil && bytes.Equal(old, data)
}
