package clickhouse

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// RuleOutputs is the table of a rule's clickhouse action that names
// none; any other table a rule names is created on first use with the
// same columns (CREATE TABLE ... AS rule_outputs) and the action's typed
// columns (see RuleTable).
const RuleOutputs = "rule_outputs"

// RuleColumn is a typed column of a rule's table: its value is the
// rule output's top-level field of the same name, converted to Type
// (NULL when the field is missing or does not convert).
type RuleColumn struct {
	Name string
	Type string
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// reserved are the tables and views the migrations create, which no
// rule may write into (rule_outputs aside).
var reserved = []string{"telemetry", "presence", "shadows", "shadows_latest", "shadows_latest_mv", "shadows_current", "anomalies", "aggregates"}

// ruleOutputColumns are the columns every rule table has.
var ruleOutputColumns = []string{"thing", "fired_at", "rule", "key", "payload", "metrics", "src", "partition", "offset"}

// columnTypes are the types a rule column may have.
var columnTypes = []string{"String", "Bool", "Float64", "Float32", "Int64", "Int32", "Int16", "Int8", "UInt64", "UInt32", "UInt16", "UInt8"}

// RuleTable is where a rule's clickhouse action stores its firings.
type RuleTable struct {
	// Name is the table: RuleOutputs, or one the rule names.
	Name string
	// Columns are the typed columns, sorted by name.
	Columns []RuleColumn
}

// ParseRuleTable checks the arguments of a rule's clickhouse action and
// returns its table; the error says what is wrong. table ("" for none:
// rule_outputs) is a plain identifier (a letter or _, then letters,
// digits or _; at most 63) that is not one of iotpipe's other tables;
// columns (nil for none) maps a column name to its type, e.g.
// {"lux": "Float64"}, and needs a table of the rule's own.
func ParseRuleTable(table string, columns map[string]any) (RuleTable, error) {
	if table == "" {
		table = RuleOutputs
	}
	switch {
	case !identifier.MatchString(table):
		return RuleTable{}, fmt.Errorf("table %q is not a plain table name (a letter or _, then letters, digits or _; at most 63)", table)
	case slices.Contains(reserved, table) || strings.HasPrefix(table, "iotpipe_"):
		return RuleTable{}, fmt.Errorf("table %s is iotpipe's own; name another (or %s)", table, RuleOutputs)
	case table == RuleOutputs && len(columns) > 0:
		return RuleTable{}, fmt.Errorf("columns need a table of the rule's own; %s has none", RuleOutputs)
	}
	out := RuleTable{Name: table}
	for name, v := range columns {
		typ, ok := v.(string)
		switch {
		case !identifier.MatchString(name):
			return RuleTable{}, fmt.Errorf("column %q is not a plain column name (a letter or _, then letters, digits or _)", name)
		case slices.Contains(ruleOutputColumns, name):
			return RuleTable{}, fmt.Errorf("column %s is one iotpipe writes itself (%s); name the field otherwise", name, strings.Join(ruleOutputColumns, ", "))
		case !ok || !slices.Contains(columnTypes, typ):
			return RuleTable{}, fmt.Errorf("column %s has type %v; want one of %s", name, v, strings.Join(columnTypes, ", "))
		}
		out.Columns = append(out.Columns, RuleColumn{Name: name, Type: typ})
	}
	slices.SortFunc(out.Columns, func(a, b RuleColumn) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Statements returns the statements that create the table (of a rule's
// own) when it does not exist, as a copy of rule_outputs (its columns,
// partitioning and TTL at the time), and add the typed columns it lacks:
// each Nullable, filled by the server from the row's payload. Names are
// quoted (a rule may name a table "order").
func (t RuleTable) Statements() []string {
	stmts := []string{"CREATE TABLE IF NOT EXISTS `" + t.Name + "` AS " + RuleOutputs}
	for _, c := range t.Columns {
		typ := "Nullable(" + c.Type + ")"
		stmts = append(stmts, fmt.Sprintf("ALTER TABLE `%s` ADD COLUMN IF NOT EXISTS `%s` %s DEFAULT JSONExtract(payload, '%s', '%s')",
			t.Name, c.Name, typ, c.Name, typ))
	}
	return stmts
}

// RuleOutputColumns are the columns every rule table has, which the
// sink writes.
func RuleOutputColumns() []string { return slices.Clone(ruleOutputColumns) }
