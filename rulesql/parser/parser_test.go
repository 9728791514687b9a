package parser

import (
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/rulesql/ast"
)

func TestParseRules(t *testing.T) {
	src := `-- two rules
CREATE RULE hot AS
SELECT temperature, topic(3) AS id, state.reported.t AS s.t FROM 'farm/+/sensors/+'
WHERE temperature > 30 AND humidity < 50
THEN webhook(url => 'https://h/${topic(2)}', headers => {'X': 'y'}), kafka(topic => 'k')
ERROR ACTION webhook(url => 'https://err');
select value *.messages from 'test/test2';`
	f, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Rules) != 2 {
		t.Fatalf("got %d rules, want 2", len(f.Rules))
	}
	r := f.Rules[0]
	if r.Name != "hot" || r.Select.Topic != "farm/+/sensors/+" || len(r.Select.Items) != 3 {
		t.Errorf("rule 1 = %+v", r)
	}
	if got := r.Select.Items[2].Alias; len(got) != 2 || got[0] != "s" || got[1] != "t" {
		t.Errorf("dotted alias = %v", got)
	}
	if len(r.Actions) != 2 || r.Actions[0].Type != "webhook" || r.Actions[1].Type != "kafka" || r.ErrorAction == nil {
		t.Errorf("actions = %+v, error action %+v", r.Actions, r.ErrorAction)
	}
	w, ok := r.Select.Where.(*ast.Binary)
	if !ok || w.Op != "AND" {
		t.Fatalf("where = %#v", r.Select.Where)
	}
	if l := w.L.(*ast.Binary); l.Op != ">" || l.L.(*ast.Ident).Name != "temperature" {
		t.Errorf("where left = %#v", w.L)
	}
	r2 := f.Rules[1]
	if r2.Name != "" || !r2.Select.Value {
		t.Errorf("rule 2 = %+v", r2.Select)
	}
	if fld, ok := r2.Select.Items[0].Expr.(*ast.Field); !ok || fld.Name != "messages" {
		t.Errorf("select value item = %#v", r2.Select.Items[0].Expr)
	} else if _, ok := fld.X.(*ast.Star); !ok {
		t.Errorf("*.messages base = %#v", fld.X)
	}
}

func TestParsePrecedence(t *testing.T) {
	tests := []struct{ src, want string }{
		{"1 + 2 * 3", "(1 + (2 * 3))"},
		{"a OR b AND NOT c = d", "(a OR (b AND (NOT (c = d))))"},
		{"-a.b[1] - 2", "((- a.b[1]) - 2)"},
		{"(1 + 2) * 3 % 4", "(((1 + 2) * 3) % 4)"},
		{"a <> b != c", "((a <> b) <> c)"},
		{"-5", "-5"},
	}
	for _, tt := range tests {
		e, err := ParseExpr(tt.src)
		if err != nil {
			t.Errorf("ParseExpr(%q): %v", tt.src, err)
			continue
		}
		if got := show(e); got != tt.want {
			t.Errorf("ParseExpr(%q) = %s, want %s", tt.src, got, tt.want)
		}
	}
}

func show(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.Binary:
		return "(" + show(t.L) + " " + t.Op + " " + show(t.R) + ")"
	case *ast.Unary:
		return "(" + t.Op + " " + show(t.X) + ")"
	case *ast.Ident:
		return t.Name
	case *ast.Field:
		return show(t.X) + "." + t.Name
	case *ast.Index:
		return show(t.X) + "[" + show(t.Index) + "]"
	case *ast.Literal:
		switch v := t.Value.(type) {
		case int64:
			return itoa(v)
		}
	}
	return "?"
}

func itoa(v int64) string {
	if v < 0 {
		return "-" + itoa(-v)
	}
	if v < 10 {
		return string(rune('0' + v))
	}
	return itoa(v/10) + string(rune('0'+v%10))
}

func TestParseExtensions(t *testing.T) {
	f, err := Parse(`SELECT clientid() AS c, avg(t) AS a, percentile(t, 0.95) AS p95 FROM 's/#'
GROUP BY HOP(INTERVAL 5 MINUTES, INTERVAL 1 MINUTE), clientid(), topic(2) EVENT TIME ts ALLOWED LATENESS 30 SECONDS;
SELECT * FROM 'fridge/+' WHERE state.reported.DoorOpened = true FOR 10 MINUTES RESOLVE;
SELECT count(*) AS n FROM 'x' GROUP BY TUMBLE(1 HOUR);
SELECT count(*) AS n FROM 'x' GROUP BY WINDOW(hopping, 10 seconds, 5 seconds)`)
	if err != nil {
		t.Fatal(err)
	}
	g := f.Rules[0].Select.GroupBy
	if g.Window != "hopping" || g.Size != 5*time.Minute || g.Slide != time.Minute || len(g.Keys) != 2 || g.EventTime == nil || g.Lateness != 30*time.Second {
		t.Errorf("group by = %+v", g)
	}
	fo := f.Rules[1].Select.For
	if fo == nil || fo.Duration != 10*time.Minute || !fo.Resolve {
		t.Errorf("for = %+v", fo)
	}
	if g := f.Rules[2].Select.GroupBy; g.Window != "tumbling" || g.Size != time.Hour || g.Slide != time.Hour {
		t.Errorf("tumble = %+v", g)
	}
	if c := f.Rules[2].Select.Items[0].Expr.(*ast.Call); !c.Star {
		t.Errorf("count(*) = %+v", c)
	}
	if g := f.Rules[3].Select.GroupBy; g.Window != "hopping" || g.Size != 10*time.Second || g.Slide != 5*time.Second {
		t.Errorf("window() = %+v", g)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"SELECT a FROM x", "1:15: expected a quoted topic filter after FROM, found \"x\""},
		{"SELECT a, FROM 't'", "1:11: unexpected keyword FROM, expected an expression"},
		{"SELECT a FROM 't' WHERE", "1:24: unexpected end of input, expected an expression"},
		{"SELECT (a FROM 't'", "1:11: expected ), found \"FROM\""},
		{"CREATE RULE AS SELECT 1 FROM 't'", "1:13: expected rule name, found \"AS\""},
		{"SELECT a FROM 't' THEN webhook(url 'x')", "1:36: expected => after argument name url"},
		{"SELECT a FROM 't' WHERE a FOR 10 FORTNIGHTS", "1:34: expected a time unit (SECONDS, MINUTES, HOURS, DAYS), found \"FORTNIGHTS\""},
		{"SELECT CASE WHEN a THEN 1 FROM 't'", "1:27: expected END, found \"FROM\""},
		{"SELECT a FROM 't' extra", "1:19: expected ; or end of file after rule, found \"extra\""},
		{"-- nothing", "1:11: no rule in file"},
		{"SELECT a FROM 't' GROUP BY clientid()", "1:28: GROUP BY must start with a window: TUMBLE(INTERVAL n UNIT) or HOP(size, slide)"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.src)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%q) error = %v\nwant %s", tt.src, err, tt.want)
		}
	}
}

func TestParseDepthLimit(t *testing.T) {
	deep := ""
	for range 1000 {
		deep += "("
	}
	if _, err := Parse("SELECT " + deep + "1 FROM 't'"); err == nil {
		t.Fatal("deeply nested expression parsed without error")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM 'a/#' WHERE x > 1",
		"CREATE RULE r AS SELECT a.b[0] AS c.d FROM '+/x' THEN webhook(url => 'u${topic(1)}');",
		"SELECT (SELECT VALUE v FROM arr WHERE v > 1) AS big FROM 't'",
		"SELECT CASE a WHEN 1 THEN 'x' ELSE 'y' END FROM 't' WHERE NOT b FOR 5 MINUTES RESOLVE",
		"SELECT avg(t) FROM 't' GROUP BY HOP(INTERVAL 5 MINUTES, INTERVAL 1 MINUTE), clientid() EVENT TIME ts",
		"SELECT cast(a AS Int), {'k': [1, -2.5e3, null, true]} FROM 't'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		file, err := Parse(src)
		if err == nil && len(file.Rules) == 0 {
			t.Fatalf("Parse(%q) gave no rules and no error", src)
		}
	})
}
