package clickhouse

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestQueryLimitsSettings(t *testing.T) {
	got := QueryLimits{Timeout: 1500 * time.Millisecond, MaxRows: 100}.Settings()
	want := []Setting{
		{"readonly", "1"}, {"max_execution_time", "2"}, {"max_result_rows", "100"}, {"result_overflow_mode", "'break'"},
		{"max_memory_usage", "1073741824"}, {"max_concurrent_queries_for_user", "8"}, {"allow_introspection_functions", "0"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("settings %v, want %v", got, want)
	}
}

func TestQueryUserStatements(t *testing.T) {
	got := QueryUserStatements("iot", "0a1b", QueryLimits{})
	want := []string{
		"CREATE SETTINGS PROFILE IF NOT EXISTS iotpipe_query_iot",
		"ALTER SETTINGS PROFILE iotpipe_query_iot SETTINGS readonly = 1, max_execution_time = 30, max_result_rows = 10001, result_overflow_mode = 'break', max_memory_usage = 1073741824, max_concurrent_queries_for_user = 8, allow_introspection_functions = 0",
		"CREATE USER IF NOT EXISTS iotpipe_query_iot IDENTIFIED WITH sha256_password BY '0a1b'",
		"ALTER USER iotpipe_query_iot IDENTIFIED WITH sha256_password BY '0a1b' DEFAULT DATABASE iot SETTINGS PROFILE 'iotpipe_query_iot'",
		"GRANT SELECT ON iot.* TO iotpipe_query_iot WITH REPLACE OPTION",
	}
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Fatalf("statements:\n%s\nwant them to start with\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, s := range got[len(want):] {
		if !strings.HasPrefix(s, "GRANT SELECT ON system.") || !strings.HasSuffix(s, " TO iotpipe_query_iot") {
			t.Errorf("grant %q is not a SELECT on a system table", s)
		}
	}
}

func TestCheckDatabase(t *testing.T) {
	for db, ok := range map[string]bool{"default": true, "iot_2": true, "my-db": false, "a.b": false, "": false} {
		if err := CheckDatabase(db); (err == nil) != ok {
			t.Errorf("CheckDatabase(%q) = %v", db, err)
		}
	}
}
