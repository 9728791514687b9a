package rules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/rulesql"
)

// ruleDir is a rules directory whose files a test writes, each write
// with a later modification time.
type ruleDir struct {
	t   *testing.T
	dir string
	n   int
}

func newRuleDir(t *testing.T) *ruleDir { return &ruleDir{t: t, dir: t.TempDir()} }

func (d *ruleDir) write(name, src string) {
	d.t.Helper()
	path := filepath.Join(d.dir, name)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		d.t.Fatal(err)
	}
	d.n++
	mt := time.Now().Add(time.Duration(d.n-1000) * time.Minute)
	os.Chtimes(path, mt, mt)
}

// running describes the running rules as "name:topic" of their first
// action, sorted.
func running(p *Processor) []string {
	var out []string
	for _, r := range p.Rules().Rules {
		topic := ""
		if t, ok := r.Actions[0].Args["topic"].(*rulesql.Template); ok {
			topic = t.Source
		}
		out = append(out, r.Name+":"+topic)
	}
	slices.Sort(out)
	return out
}

// fileErrors maps each file in error (base name) to its error.
func fileErrors(p *Processor) map[string]string {
	out := map[string]string{}
	for _, f := range p.Status().Files {
		if f.Error != "" {
			out[filepath.Base(f.Path)] = f.Error
		}
	}
	return out
}

func rule(name, topic string) string {
	return "CREATE RULE " + name + " AS SELECT 1 FROM 'x/" + name + "' THEN kafka(topic => '" + topic + "')"
}

// A new file that reuses another file's rule name is refused alone: an
// unrelated file added in the same reload loads, and the refused file
// loads on a later reload once the name is free, without being touched.
// Before, every file changed in that reload was refused with the clash's
// error and stayed so until touched.
func TestReloadClashHoldsBackOnlyItsFile(t *testing.T) {
	d := newRuleDir(t)
	d.write("a.sql", rule("x", "a1"))
	p := New(Options{})
	if err := p.Reload(d.dir); err != nil {
		t.Fatal(err)
	}
	d.write("b.sql", rule("x", "b1"))                     // clashes with a.sql
	d.write("c.sql", rule("y", "c1"))                     // unrelated
	d.write("d.sql", rule("z", "d1")+";"+rule("z", "d2")) // a duplicate inside one file
	err := p.Reload(d.dir)
	if err == nil {
		t.Fatal("reload with a clash and a duplicate returned nil")
	}
	if got, want := running(p), []string{"x:a1", "y:c1"}; !slices.Equal(got, want) {
		t.Errorf("running %v, want %v", got, want)
	}
	errs := fileErrors(p)
	if len(errs) != 2 || !strings.Contains(errs["b.sql"], "rule name x is already used in "+filepath.Join(d.dir, "a.sql")) ||
		!strings.Contains(errs["d.sql"], "declared twice") {
		t.Errorf("file errors %v, want b.sql's clash and d.sql's duplicate only", errs)
	}
	// a.sql renames its rule: b.sql's x is free and loads, untouched.
	d.write("a.sql", rule("w", "a2"))
	if err := p.Reload(d.dir); err == nil || !strings.Contains(err.Error(), "d.sql") || strings.Contains(err.Error(), "b.sql") {
		t.Errorf("reload after the rename: %v, want d.sql's error only", err)
	}
	if got, want := running(p), []string{"w:a2", "x:b1", "y:c1"}; !slices.Equal(got, want) {
		t.Errorf("after the rename running %v, want %v", got, want)
	}
	// Two files swap a name in one reload: both versions are taken.
	d.write("a.sql", rule("x", "a3"))
	d.write("b.sql", rule("w", "b2"))
	p.Reload(d.dir)
	if got, want := running(p), []string{"w:b2", "x:a3", "y:c1"}; !slices.Equal(got, want) {
		t.Errorf("after the swap running %v, want %v", got, want)
	}
	if errs := fileErrors(p); len(errs) != 1 || errs["d.sql"] == "" {
		t.Errorf("after the swap file errors %v, want d.sql's only", errs)
	}
}

// With LastGoodDir, a file broken while the node was down runs its last
// good version after the restart, and says so; fixed, the new version
// runs and is kept; removed, its rules and its kept copy go.
func TestReloadKeepsLastGoodVersionAcrossRestart(t *testing.T) {
	d := newRuleDir(t)
	kept := filepath.Join(t.TempDir(), "rules-last-good")
	d.write("lux.sql", rule("lux", "v1"))
	d.write("temp.sql", rule("temp", "t1"))
	if err := New(Options{LastGoodDir: kept}).Reload(d.dir); err != nil {
		t.Fatal(err)
	}
	d.write("lux.sql", "CREATE RULE lux AS SELECT lux FROM 'g/+/lux' WHERE lux > THEN kafka(topic => 'v2')")

	p := New(Options{LastGoodDir: kept}) // the restart
	err := p.Reload(d.dir)
	if err == nil || !strings.Contains(err.Error(), "lux.sql:1:") || !strings.Contains(err.Error(), "its last good version runs, kept in "+filepath.Join(kept, "lux.sql")) {
		t.Errorf("reload after the restart: %v", err)
	}
	if got, want := running(p), []string{"lux:v1", "temp:t1"}; !slices.Equal(got, want) {
		t.Errorf("after the restart running %v, want %v", got, want)
	}
	if st := p.Status(); st.Errors != 1 {
		t.Errorf("status errors %d, want 1", st.Errors)
	}
	// Without LastGoodDir a restart forgets it, as documented.
	if q := New(Options{}); q.Reload(d.dir) == nil || !slices.Equal(running(q), []string{"temp:t1"}) {
		t.Errorf("without LastGoodDir running %v", running(q))
	}

	d.write("lux.sql", rule("lux", "v3"))
	if err := p.Reload(d.dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(kept, "lux.sql")); string(b) != rule("lux", "v3") {
		t.Errorf("kept lux.sql %q, want the fixed version", b)
	}
	os.Remove(filepath.Join(d.dir, "lux.sql"))
	if err := p.Reload(d.dir); err != nil {
		t.Fatal(err)
	}
	if got, want := running(p), []string{"temp:t1"}; !slices.Equal(got, want) {
		t.Errorf("after removing lux.sql running %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(kept, "lux.sql")); !os.IsNotExist(err) {
		t.Errorf("kept copy of a removed file: %v", err)
	}
	entries, _ := os.ReadDir(kept)
	if len(entries) != 1 || entries[0].Name() != "temp.sql" {
		t.Errorf("kept dir holds %v, want temp.sql only", entries)
	}
}
