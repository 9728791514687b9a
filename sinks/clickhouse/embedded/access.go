package embedded

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"path/filepath"
	"text/template"

	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
)

// Files the server writes in its data directory at every start, mode
// 0600: the configuration the child loads (--config-file) and the users
// it names.
const (
	configFile = "iotpipe-config.xml"
	usersFile  = "iotpipe-users.xml"
)

// usersXML is the server's users. chDB's own session (the one that runs
// serveQuery) logs in as "default" without a password from 127.0.0.1,
// so that user exists, but no one else can log in as it: one session at
// a time, and the child's holds it for its lifetime. (chDB answers a
// refused login over the native protocol by ending the process: the
// supervisor restarts it; over HTTP the login is refused cleanly.)
// iotpipe's clients log in as the administrative user; /api/sql as the
// restricted user, whose profile and grants are those of
// schemas/clickhouse (the same an external server gets with SQL).
// Passwords are stored as SHA-256.
var usersXML = template.Must(template.New(usersFile).Parse(`<clickhouse>
    <profiles>
        <default/>
        <iotpipe_serve>
            <max_sessions_for_user>1</max_sessions_for_user>
        </iotpipe_serve>
        <{{.QueryUser}}>
{{- range .Settings}}
            <{{.Name}}>{{.Value}}</{{.Name}}>
{{- end}}
        </{{.QueryUser}}>
    </profiles>
    <quotas>
        <default/>
    </quotas>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>iotpipe_serve</profile>
            <quota>default</quota>
        </default>
        <{{.User}}>
            <password_sha256_hex>{{.PasswordHash}}</password_sha256_hex>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
            <access_management>1</access_management>
        </{{.User}}>
        <{{.QueryUser}}>
            <password_sha256_hex>{{.QueryPasswordHash}}</password_sha256_hex>
            <networks><ip>::/0</ip></networks>
            <profile>{{.QueryUser}}</profile>
            <quota>default</quota>
            <grants>
{{- range .Grants}}
                <query>GRANT {{.}}</query>
{{- end}}
            </grants>
        </{{.QueryUser}}>
    </users>
</clickhouse>
`))

// writeAccess writes the child's configuration and users for c and the
// restricted user's limits into dir, and returns the configuration's
// path.
func writeAccess(dir string, c Credentials, limits ddl.QueryLimits) (string, error) {
	settings := limits.Settings()
	for i, s := range settings { // XML holds the values unquoted
		if n := len(s.Value); n >= 2 && s.Value[0] == '\'' && s.Value[n-1] == '\'' {
			settings[i].Value = s.Value[1 : n-1]
		}
	}
	var users bytes.Buffer
	err := usersXML.Execute(&users, map[string]any{
		"User": c.User, "PasswordHash": sha256Hex(c.Password),
		"QueryUser": c.QueryUser, "QueryPasswordHash": sha256Hex(c.QueryPassword),
		"Settings": settings, "Grants": ddl.QueryGrants(Database),
	})
	if err != nil {
		return "", fmt.Errorf("embedded clickhouse: users: %w", err)
	}
	usersPath := filepath.Join(dir, usersFile)
	if err := writePrivate(usersPath, users.Bytes()); err != nil {
		return "", fmt.Errorf("embedded clickhouse: %w", err)
	}
	configPath := filepath.Join(dir, configFile)
	var path bytes.Buffer
	if err := xml.EscapeText(&path, []byte(usersPath)); err != nil {
		return "", err
	}
	config := fmt.Sprintf("<clickhouse>\n    <users_config>%s</users_config>\n</clickhouse>\n", path.String())
	if err := writePrivate(configPath, []byte(config)); err != nil {
		return "", fmt.Errorf("embedded clickhouse: %w", err)
	}
	return configPath, nil
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
