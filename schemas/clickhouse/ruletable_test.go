package clickhouse

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestParseRuleTable(t *testing.T) {
	tests := []struct {
		table   string
		columns map[string]any
		want    RuleTable
		err     string
	}{
		{"", nil, RuleTable{Name: "rule_outputs"}, ""},
		{"rule_outputs", nil, RuleTable{Name: "rule_outputs"}, ""},
		{"lux_alerts", map[string]any{"lux": "Float64", "house": "String"},
			RuleTable{Name: "lux_alerts", Columns: []RuleColumn{{"house", "String"}, {"lux", "Float64"}}}, ""},
		{"_T2", map[string]any{}, RuleTable{Name: "_T2"}, ""},
		{"lux-alerts", nil, RuleTable{}, `table "lux-alerts" is not a plain table name`},
		{"db.t", nil, RuleTable{}, "not a plain table name"},
		{"t; DROP TABLE telemetry", nil, RuleTable{}, "not a plain table name"},
		{strings.Repeat("t", 64), nil, RuleTable{}, "at most 63"},
		{"telemetry", nil, RuleTable{}, "table telemetry is iotpipe's own"},
		{"shadows_current", nil, RuleTable{}, "iotpipe's own"},
		{"iotpipe_schema_migrations", nil, RuleTable{}, "iotpipe's own"},
		{"rule_outputs", map[string]any{"a": "String"}, RuleTable{}, "columns need a table of the rule's own"},
		{"t", map[string]any{"a b": "String"}, RuleTable{}, `column "a b" is not a plain column name`},
		{"t", map[string]any{"payload": "String"}, RuleTable{}, "column payload is one iotpipe writes itself"},
		{"t", map[string]any{"a": "Array(String)"}, RuleTable{}, "column a has type Array(String); want one of String, Bool"},
		{"t", map[string]any{"a": "Float64') SETTINGS x=1 --"}, RuleTable{}, "want one of"},
		{"t", map[string]any{"a": 3.0}, RuleTable{}, "column a has type 3"},
	}
	for _, tt := range tests {
		got, err := ParseRuleTable(tt.table, tt.columns)
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("ParseRuleTable(%q, %v) error %v, want %q", tt.table, tt.columns, err, tt.err)
			continue
		}
		if err == nil && (got.Name != tt.want.Name || !slices.Equal(got.Columns, tt.want.Columns)) {
			t.Errorf("ParseRuleTable(%q, %v) = %+v, want %+v", tt.table, tt.columns, got, tt.want)
		}
	}
}

func TestRuleTableStatements(t *testing.T) {
	rt, err := ParseRuleTable("lux_alerts", map[string]any{"lux": "Float64", "on": "Bool"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"CREATE TABLE IF NOT EXISTS `lux_alerts` AS rule_outputs",
		"ALTER TABLE `lux_alerts` ADD COLUMN IF NOT EXISTS `lux` Nullable(Float64) DEFAULT JSONExtract(payload, 'lux', 'Nullable(Float64)')",
		"ALTER TABLE `lux_alerts` ADD COLUMN IF NOT EXISTS `on` Nullable(Bool) DEFAULT JSONExtract(payload, 'on', 'Nullable(Bool)')",
	}
	if got := rt.Statements(); !slices.Equal(got, want) {
		t.Errorf("statements:\n%q\nwant\n%q", got, want)
	}
}

// FuzzParseRuleTable checks that whatever a rule file says, an accepted
// table and its columns are plain identifiers and types from the list,
// so the statements made from them say nothing else.
func FuzzParseRuleTable(f *testing.F) {
	f.Add("lux_alerts", "lux", "Float64")
	f.Add("x; DROP TABLE t", "a'b", "String')")
	f.Add("", "", "")
	plain := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	f.Fuzz(func(t *testing.T, table, column, typ string) {
		rt, err := ParseRuleTable(table, map[string]any{column: typ})
		if err != nil {
			return
		}
		if !plain.MatchString(rt.Name) {
			t.Fatalf("accepted table %q", rt.Name)
		}
		for _, c := range rt.Columns {
			if !plain.MatchString(c.Name) || !slices.Contains(columnTypes, c.Type) {
				t.Fatalf("accepted column %q %q", c.Name, c.Type)
			}
		}
		for _, s := range rt.Statements() {
			if strings.ContainsAny(s, ";\"\\") || strings.Count(s, "`")%2 != 0 {
				t.Fatalf("statement %q", s)
			}
		}
	})
}
