package clickhouse

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// QueryLimits bound what one query of the restricted query user (the
// user /api/sql runs as) may use; its settings profile sets them, so the
// server enforces them whatever the query says.
type QueryLimits struct {
	// Timeout is max_execution_time. Default 30s.
	Timeout time.Duration
	// MaxRows is max_result_rows (result_overflow_mode = break: the
	// result is cut at a block boundary past it). Default 10001.
	MaxRows int
	// MaxMemory is max_memory_usage in bytes. Default 1 GiB.
	MaxMemory int64
	// MaxConcurrent is max_concurrent_queries_for_user. Default 8.
	MaxConcurrent int
}

// WithDefaults returns l with every zero field set to its default.
func (l QueryLimits) WithDefaults() QueryLimits {
	if l.Timeout <= 0 {
		l.Timeout = 30 * time.Second
	}
	if l.MaxRows <= 0 {
		l.MaxRows = 10001
	}
	if l.MaxMemory <= 0 {
		l.MaxMemory = 1 << 30
	}
	if l.MaxConcurrent <= 0 {
		l.MaxConcurrent = 8
	}
	return l
}

// Setting is one setting of a settings profile.
type Setting struct {
	Name  string
	Value string // as it is written in SQL: a number or a quoted string
}

// Settings are the restricted user's profile: readonly = 1 (reads
// only, and no setting may be changed, so the limits hold), the limits,
// and no introspection functions.
func (l QueryLimits) Settings() []Setting {
	l = l.WithDefaults()
	return []Setting{
		{"readonly", "1"},
		{"max_execution_time", strconv.Itoa(int(l.Timeout.Seconds() + 0.999))},
		{"max_result_rows", strconv.Itoa(l.MaxRows)},
		{"result_overflow_mode", "'break'"},
		{"max_memory_usage", strconv.FormatInt(l.MaxMemory, 10)},
		{"max_concurrent_queries_for_user", strconv.Itoa(l.MaxConcurrent)},
		{"allow_introspection_functions", "0"},
	}
}

// QueryUser is the name of the restricted user that reads database db,
// and of its settings profile.
func QueryUser(db string) string { return "iotpipe_query_" + db }

// queryableSystemTables are the system tables the restricted user may
// read: what the dashboard needs to list tables and columns, and the
// tables of constants.
var queryableSystemTables = []string{"one", "numbers", "numbers_mt", "zeros", "databases", "tables", "columns", "parts"}

// QueryGrants are the privileges of the restricted user of database db,
// each a GRANT clause without its grantee ("SELECT ON db.*"): SELECT on
// db's tables and on an allow-list of system tables. Nothing else: no
// table functions that reach files or the network (file, url, remote,
// s3, ...: they need READ ON <source>), no temporary tables, no KILL,
// no SYSTEM, no access management.
func QueryGrants(db string) []string {
	out := []string{"SELECT ON " + db + ".*"}
	for _, t := range queryableSystemTables {
		out = append(out, "SELECT ON system."+t)
	}
	return out
}

// CheckDatabase returns an error when db cannot be named in the
// restricted user's grants (a plain identifier).
func CheckDatabase(db string) error {
	if !identifier.MatchString(db) {
		return fmt.Errorf("database %q is not a plain name (a letter or _, then letters, digits or _); the restricted query user cannot be granted it", db)
	}
	return nil
}

// QueryUserStatements returns the statements that create (or bring up
// to date) the restricted user of database db with password and its
// settings profile, on a server with SQL-driven access control. They
// are idempotent: every iotpipe node runs them at start. db is checked
// with CheckDatabase; password must be hex.
func QueryUserStatements(db, password string, l QueryLimits) []string {
	user := QueryUser(db)
	settings := make([]string, 0, 8)
	for _, s := range l.Settings() {
		settings = append(settings, s.Name+" = "+s.Value)
	}
	stmts := []string{
		"CREATE SETTINGS PROFILE IF NOT EXISTS " + user,
		"ALTER SETTINGS PROFILE " + user + " SETTINGS " + strings.Join(settings, ", "),
		"CREATE USER IF NOT EXISTS " + user + " IDENTIFIED WITH sha256_password BY '" + password + "'",
		"ALTER USER " + user + " IDENTIFIED WITH sha256_password BY '" + password + "' DEFAULT DATABASE " + db + " SETTINGS PROFILE '" + user + "'",
	}
	for i, g := range QueryGrants(db) {
		stmt := "GRANT " + g + " TO " + user
		if i == 0 {
			stmt += " WITH REPLACE OPTION" // drops any privilege granted before
		}
		stmts = append(stmts, stmt)
	}
	return stmts
}
