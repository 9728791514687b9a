package embedded

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"

	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
)

// CredentialsFile is the file in the data directory that holds the
// embedded server's credentials (mode 0600).
const CredentialsFile = "iotpipe-credentials.json"

// AdminUser is the embedded server's user for iotpipe's own clients: the
// sink, migrations and `iotpipe sql`.
const AdminUser = "iotpipe"

// Database is the embedded server's database.
const Database = "default"

// Credentials are the embedded server's users, generated on its first
// start and kept in CredentialsFile; TCP and HTTP say where the server
// listened last (rewritten at every start), so `iotpipe sql` finds it.
type Credentials struct {
	// User and Password are the administrative user (AdminUser).
	User     string `json:"user"`
	Password string `json:"password"`
	// QueryUser and QueryPassword are the restricted user that /api/sql
	// runs queries as (schemas/clickhouse.QueryUser).
	QueryUser     string `json:"query_user"`
	QueryPassword string `json:"query_password"`
	// TCP and HTTP are the native and HTTP addresses, host:port.
	TCP  string `json:"tcp"`
	HTTP string `json:"http"`
}

// DSN is the administrative user's native DSN for the database.
func (c Credentials) DSN() string { return dsn("clickhouse", c.User, c.Password, c.TCP) }

// HTTPDSN is the administrative user's DSN over the HTTP interface.
func (c Credentials) HTTPDSN() string { return dsn("http", c.User, c.Password, c.HTTP) }

// QueryDSN is the restricted user's native DSN.
func (c Credentials) QueryDSN() string { return dsn("clickhouse", c.QueryUser, c.QueryPassword, c.TCP) }

func dsn(scheme, user, password, addr string) string {
	u := url.URL{Scheme: scheme, User: url.UserPassword(user, password), Host: addr, Path: "/" + Database}
	return u.String()
}

// ReadCredentials reads the credentials the embedded server of dataDir
// (its ClickHouse data directory, e.g. data/clickhouse) wrote.
func ReadCredentials(dataDir string) (Credentials, error) {
	path := filepath.Join(dataDir, CredentialsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("embedded clickhouse credentials: %w (written by `iotpipe run` on its first start)", err)
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return Credentials{}, fmt.Errorf("embedded clickhouse credentials %s: %w", path, err)
	}
	if c.User == "" || c.Password == "" || c.QueryUser == "" || c.QueryPassword == "" {
		return Credentials{}, fmt.Errorf("embedded clickhouse credentials %s: a user or password is missing; remove the file to generate new ones", path)
	}
	return c, nil
}

// loadCredentials returns the credentials of dataDir, generating them
// when there are none, with the addresses of this start, and writes them
// back (mode 0600). created reports a first start.
func loadCredentials(dataDir, tcp, http string) (c Credentials, created bool, err error) {
	c, err = ReadCredentials(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		created = true
		c = Credentials{User: AdminUser, Password: randomPassword(), QueryUser: ddl.QueryUser(Database), QueryPassword: randomPassword()}
	} else if err != nil {
		return c, false, err
	}
	c.TCP, c.HTTP = tcp, http
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return c, false, err
	}
	if err := writePrivate(filepath.Join(dataDir, CredentialsFile), append(b, '\n')); err != nil {
		return c, false, err
	}
	return c, created, nil
}

// writePrivate replaces path with b, readable by its owner only.
func writePrivate(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // an older file kept its mode
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// randomPassword is 26 characters of base32 (128 bits, crypto/rand),
// which need no escaping in a DSN or XML.
func randomPassword() string { return rand.Text() }

// hostPort joins host and port.
func hostPort(host string, port int) string { return net.JoinHostPort(host, fmt.Sprint(port)) }
