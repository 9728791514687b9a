package eventlog

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// CredentialsFile is the file, in the embedded log's data directory, that
// holds the credentials its clients authenticate with.
const CredentialsFile = "credentials.json"

// Credentials authenticate a client to the log with SASL.
type Credentials struct {
	// Mechanism is SCRAM-SHA-256 (the embedded log's), SCRAM-SHA-512 or
	// PLAIN.
	Mechanism string `json:"mechanism"`
	User      string `json:"user"`
	Password  string `json:"password"`
}

// Opt is the franz-go option that authenticates with c.
func (c *Credentials) Opt() (kgo.Opt, error) {
	switch c.Mechanism {
	case "", "SCRAM-SHA-256":
		return kgo.SASL(scram.Auth{User: c.User, Pass: c.Password}.AsSha256Mechanism()), nil
	case "SCRAM-SHA-512":
		return kgo.SASL(scram.Auth{User: c.User, Pass: c.Password}.AsSha512Mechanism()), nil
	case "PLAIN":
		return kgo.SASL(plain.Auth{User: c.User, Pass: c.Password}.AsMechanism()), nil
	}
	return nil, fmt.Errorf("kafka credentials: unknown SASL mechanism %q (SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN)", c.Mechanism)
}

// ReadCredentials reads credentials written by the embedded log (or by
// the operator, in the same JSON shape) from path; a directory means the
// CredentialsFile in it.
func ReadCredentials(path string) (*Credentials, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, CredentialsFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kafka credentials: %w", err)
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("kafka credentials %s: %w", path, err)
	}
	if c.User == "" || c.Password == "" {
		return nil, fmt.Errorf("kafka credentials %s: no user or password", path)
	}
	if _, err := c.Opt(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// embeddedCredentials returns the embedded log's credentials, generated
// on its first start and kept in dir (mode 0600).
func embeddedCredentials(dir string) (*Credentials, bool, error) {
	path := filepath.Join(dir, CredentialsFile)
	c, err := ReadCredentials(path)
	if err == nil {
		return c, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	var secret [24]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, false, fmt.Errorf("kafka credentials: %w", err)
	}
	c = &Credentials{Mechanism: "SCRAM-SHA-256", User: "iotpipe", Password: hex.EncodeToString(secret[:])}
	b, _ := json.MarshalIndent(c, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return nil, false, fmt.Errorf("kafka credentials: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, false, fmt.Errorf("kafka credentials: %w", err)
	}
	return c, true, nil
}
