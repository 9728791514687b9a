package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDryRunOutputs: with Options.DryRunOutputs, a dry run emits every
// rule output as the rules test output line (rules without actions
// too, the resolved event of a FOR rule with its fired output, window
// rows); a run that is not dry emits none.
func TestDryRunOutputs(t *testing.T) {
	const src = `CREATE RULE hot AS SELECT t FROM 's/+' WHERE t > 30;
CREATE RULE alert AS SELECT t, topic(2) AS s FROM 's/+' WHERE t > 40 THEN webhook(url => 'http://h/${topic(2)}');
CREATE RULE door AS SELECT open FROM 'door/+' WHERE open = true FOR 10 SECONDS RESOLVE;
CREATE RULE per_min AS SELECT count(*) AS n FROM 's/+' GROUP BY TUMBLE(1 MINUTE)`
	for _, dry := range []bool{true, false} {
		g := newRig(t, src, Options{DryRunOutputs: "replay.outputs"})
		g.h.DryRun = dry
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var got []string
		at := func(d time.Duration) { g.h.Now = t0.Add(d) }
		collect := func(recs []*kgo.Record) {
			for _, r := range only(recs, "replay.outputs") {
				if header(r, HeaderRule) != string(r.Key) || header(r, HeaderThing) == "" {
					t.Errorf("record key %q, iot.rule %q, iot.thing %q", r.Key, header(r, HeaderRule), header(r, HeaderThing))
				}
				got = append(got, string(r.Value))
			}
		}
		at(0)
		collect(g.publish("a", "s/a", `{"t": 35}`))
		collect(g.publish("a", "s/a", `{"t": 45}`))
		collect(g.publish("d", "door/d", `{"open": true}`))
		at(11 * time.Second)
		collect(g.tick())
		collect(g.publish("d", "door/d", `{"open": false}`))
		at(2 * time.Minute)
		collect(g.tick())
		want := []string{
			`{"rule":"hot","output":{"t":35}}`,
			`{"rule":"hot","output":{"t":45}}`,
			`{"rule":"alert","output":{"s":"a","t":45},"actions":[{"type":"webhook","params":{"url":"http://h/a"}}]}`,
			`{"rule":"door","output":{"open":true}}`,
			`{"rule":"door","output":{"open":true},"resolved":true}`,
			`{"rule":"per_min","output":{"n":2}}`,
		}
		if !dry {
			want = nil
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("dry run %v: outputs\n%s\nwant\n%s", dry, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
