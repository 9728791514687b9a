package replay

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestDiffThreshold: raising a threshold reports exactly the outputs the
// lower one gave and the higher one does not (removed), a lowered one
// exactly the new ones (added), and a changed SELECT the changed ones;
// an untouched rule has no change.
func TestDiffThreshold(t *testing.T) {
	h := newHistory(t, 4)
	h.produce(scenario()...)
	const oldRules = `CREATE RULE hot AS SELECT temp FROM 'farm/+/temp' WHERE temp > 30;
CREATE RULE cold AS SELECT temp FROM 'farm/+/temp' WHERE temp < 20.5;
CREATE RULE door AS SELECT open FROM 'door/+/state' WHERE open = true FOR 10 SECONDS;
CREATE RULE gone AS SELECT temp FROM 'farm/s2/temp' WHERE temp > 70`
	const newRules = `CREATE RULE hot AS SELECT temp FROM 'farm/+/temp' WHERE temp > 50;
CREATE RULE cold AS SELECT temp FROM 'farm/+/temp' WHERE temp < 20.15;
CREATE RULE door AS SELECT open, n FROM 'door/+/state' WHERE open = true FOR 10 SECONDS;
CREATE RULE fresh AS SELECT temp FROM 'farm/s2/temp' WHERE temp > 70`
	sel := Selection{To: t0.Add(55 * time.Second)}
	oldSet, newSet := compileRules(t, oldRules), compileRules(t, newRules)
	// What each version gives alone, to compute the expected diff.
	oldLines, _ := h.replayLines(oldSet, sel)
	newLines, _ := h.replayLines(newSet, sel)
	countOf := func(ls []string, sub string) int64 {
		n := int64(0)
		for _, l := range ls {
			if strings.Contains(l, sub) {
				n++
			}
		}
		return n
	}
	var each []Change
	d, err := NewDiffer(oldSet, newSet, Options{Partitions: h.l.Partitions()}, func(c Change) error { each = append(each, c); return nil })
	if err != nil {
		t.Fatal(err)
	}
	var diffs []RuleDiff
	h.each(sel, d.Add, func(ctx context.Context) (err error) { diffs, err = d.Close(ctx); return err })
	by := map[string]RuleDiff{}
	for _, r := range diffs {
		by[r.Rule] = r
	}
	// hot: 30 < temp <= 50 outputs only in the old version: s3's 45s.
	if r := by["hot"]; r.Added != 0 || r.Removed != countOf(oldLines, `"temp":45`) || r.Removed == 0 || r.Changed != 0 || r.New != 1 {
		t.Errorf("hot: %+v", r)
	}
	// cold: s0's 20.1 and 20.2 readings go.
	if r := by["cold"]; r.Removed != countOf(oldLines, `"temp":20.2`) || r.Added != 0 || r.Changed != 0 {
		t.Errorf("cold: %+v", r)
	}
	// door: both doors fire, now with n.
	if r := by["door"]; r.Changed != 2 || r.Added+r.Removed != 0 || !strings.Contains(string(r.Examples[0].New), `"n":1`) {
		t.Errorf("door: %+v", r)
	}
	if r := by["gone"]; r.Removed != 1 || r.Old != 1 || r.New != 0 {
		t.Errorf("gone: %+v", r)
	}
	if r := by["fresh"]; r.Added != 1 || r.New != 1 {
		t.Errorf("fresh: %+v", r)
	}
	total := int64(0)
	for _, r := range diffs {
		total += r.Added + r.Removed + r.Changed
		if len(r.Examples) > 3*DiffExamples {
			t.Errorf("%s: %d examples", r.Rule, len(r.Examples))
		}
	}
	if int64(len(each)) != total {
		t.Errorf("%d changes passed on, counts say %d", len(each), total)
	}
	if int64(len(oldLines)) != by["hot"].Old+by["cold"].Old+by["door"].Old+by["gone"].Old ||
		int64(len(newLines)) != by["hot"].New+by["cold"].New+by["door"].New+by["fresh"].New {
		t.Errorf("output counts %+v, replays gave %d old and %d new", diffs, len(oldLines), len(newLines))
	}

	// The same rules on both sides: no change at all.
	d, err = NewDiffer(oldSet, oldSet, Options{Partitions: h.l.Partitions()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.each(sel, d.Add, func(ctx context.Context) (err error) { diffs, err = d.Close(ctx); return err })
	for _, r := range diffs {
		if r.Differs() || r.Old != r.New {
			t.Errorf("same rules differ: %+v", r)
		}
	}
}

func TestDiffText(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)
	r := RuleDiff{Rule: "hot", Old: 3, New: 2, Removed: 1, Changed: 1, Examples: []Change{
		{Kind: Removed, Rule: "hot", Source: "0/5", At: at, Old: []byte(`{"rule":"hot","output":{"t":31}}`)},
		{Kind: Changed, Rule: "hot", Source: "1/2", At: at, Old: []byte(`{"rule":"hot","output":{"t":60}}`), New: []byte(`{"rule":"hot","output":{"t":60,"x":1}}`)},
	}}
	want := `rule hot: 0 added, 1 removed, 1 changed (outputs: 3 old, 2 new)
  - 2026-03-01T12:00:01.000Z 0/5 {"rule":"hot","output":{"t":31}}
  ~ 2026-03-01T12:00:01.000Z 1/2 old {"rule":"hot","output":{"t":60}}
      new {"rule":"hot","output":{"t":60,"x":1}}
`
	if got := string(AppendRuleDiffText(nil, r)); got != want {
		t.Errorf("text:\n%s\nwant:\n%s", got, want)
	}
	if got := string(AppendRuleDiffText(nil, RuleDiff{Rule: "x", Old: 4, New: 4})); got != "rule x: no change (4 outputs)\n" {
		t.Errorf("no change: %q", got)
	}
}
