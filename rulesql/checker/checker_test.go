package checker

import (
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/rulesql/parser"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		src  string
		want []string
	}{
		{"SELECT a FROM 'a/+/b/#'", nil},
		{"SELECT a FROM 'a/b#'", []string{"1:15: bad topic filter 'a/b#': '#' must be the whole last level"}},
		{"SELECT a FROM 'a/x+'", []string{"1:15: bad topic filter 'a/x+': '+' must be a whole level"}},
		{"SELECT a FROM ''", []string{"1:15: bad topic filter '': empty"}},
		{"SELECT frob(a) FROM 't'", []string{"1:8: unknown function frob"}},
		{"SELECT upper(a, b) FROM 't'", []string{"1:8: upper takes 1 argument, got 2"}},
		{"SELECT substring(a) FROM 't'", []string{"1:8: substring takes 2 to 3 arguments, got 1"}},
		{"SELECT a + 'abc' FROM 't'", []string{"1:12: operator + needs a number; the string 'abc' can never be one"}},
		{"SELECT a + '12' FROM 't'", nil},
		{"SELECT a FROM 't' WHERE a > true", []string{"1:29: operator > compares numbers or strings; the boolean true is Boolean"}},
		{"SELECT sqrt('x') FROM 't'", []string{"1:13: sqrt() needs a number; the string 'x' can never be one"}},
		{"SELECT regexp_matches(a, '(') FROM 't'", []string{"1:8: regexp_matches: bad regular expression: error parsing regexp: missing closing ): `(`"}},
		{"SELECT parse_time('yyyy-qq', 1) FROM 't'", []string{"1:8: parse_time: unsupported letter 'q' in time pattern \"yyyy-qq\""}},
		{"SELECT cast(a AS Money) FROM 't'", []string{"1:8: unknown cast type Money (use Int, Decimal, String or Boolean)"}},
		{"SELECT topic(0) FROM 't'", []string{"1:14: topic(n) needs a level number of 1 or more"}},
		{"SELECT avg(a) FROM 't'", []string{"1:8: aggregate avg() needs a GROUP BY window (and is only allowed in SELECT)"}},
		{"SELECT avg(max(a)) FROM 't' GROUP BY TUMBLE(1 MINUTE)", []string{"1:12: aggregate max() cannot be nested in another aggregate"}},
		{"SELECT a FROM 't' WHERE count(*) > 1 GROUP BY TUMBLE(1 MINUTE)", []string{"1:25: aggregate count() needs a GROUP BY window (and is only allowed in SELECT)"}},
		{"SELECT a FROM 't' GROUP BY HOP(1 MINUTE, 2 MINUTES)", []string{"1:19: hopping window slide 2m0s must be positive and at most its size 1m0s"}},
		{"SELECT a FROM 't' GROUP BY HOP(5 MINUTES, 2 MINUTES)", []string{"1:19: window size 5m0s must be a multiple of the slide 2m0s"}},
		{"SELECT a FROM 't' WHERE pewma(a).anomaly", []string{"1:25: pewma() is only allowed in the top-level SELECT; refer to its alias in WHERE (SELECT pewma(x) AS a ... WHERE a.anomaly)"}},
		{"SELECT pewma(a, b) FROM 't'", []string{"1:17: pewma parameters must be number literals"}},
		{"SELECT a FROM 't' THEN email(to => 'x')", []string{"1:24: unknown action email (known: clickhouse, command, kafka, republish, webhook)"}},
		{"SELECT a FROM 't' THEN webhook(uri => 'x')", []string{
			"1:24: webhook needs argument url",
			"1:32: webhook has no argument uri (arguments: url, method, headers, body, timeout)",
		}},
		{"SELECT a FROM 't' THEN kafka(topic => a)", []string{"1:39: action arguments are literals; use a '${expr}' template inside a string to compute a value"}},
		{"SELECT a FROM 't' THEN clickhouse(table => 'lux_alerts', columns => {'lux': 'Float64', 'house': 'String'})", nil},
		{"SELECT a FROM 't' THEN clickhouse(table => 'lux-alerts')", []string{
			`1:24: clickhouse action: table "lux-alerts" is not a plain table name (a letter or _, then letters, digits or _; at most 63)`}},
		{"SELECT a FROM 't' THEN clickhouse(table => 'alerts_${topic(1)}')", []string{
			`1:24: clickhouse action: table "alerts_${topic(1)}" is not a plain table name (a letter or _, then letters, digits or _; at most 63)`}},
		{"SELECT a FROM 't' THEN clickhouse(table => 'telemetry')", []string{"1:24: clickhouse action: table telemetry is iotpipe's own; name another (or rule_outputs)"}},
		{"SELECT a FROM 't' THEN clickhouse(table => 't', columns => {'lux': 'Money'})", []string{
			"1:24: clickhouse action: column lux has type Money; want one of String, Bool, Float64, Float32, Int64, Int32, Int16, Int8, UInt64, UInt32, UInt16, UInt8"}},
		{"SELECT a FROM 't' THEN clickhouse(table => 't', columns => ['lux'])", []string{"1:49: clickhouse columns is an object of column name to type, e.g. {'lux': 'Float64'}"}},
		{"SELECT a FROM 't' THEN clickhouse(table => 3)", []string{"1:35: clickhouse table is a table name in quotes"}},
	}
	for _, tt := range tests {
		f, err := parser.Parse(tt.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.src, err)
			continue
		}
		var got []string
		for _, e := range Check(f.Rules[0]) {
			got = append(got, e.Error())
		}
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("Check(%q):\n got: %q\nwant: %q", tt.src, got, tt.want)
		}
	}
}
