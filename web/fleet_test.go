package web

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestParseFleetQuery(t *testing.T) {
	for _, tc := range []struct {
		query   string
		want    FleetQuery
		wantErr string
	}{
		{"", FleetQuery{Sort: SortThing, Limit: defaultPageSize}, ""},
		{"q=+gh-00+&status=connected&sort=rate&desc=1&offset=100&limit=500",
			FleetQuery{Search: "gh-00", Status: StatusConnected, Sort: SortRate, Desc: true, Offset: 100, Limit: 500}, ""},
		{"status=all&sort=last_seen&desc=false", FleetQuery{Sort: SortLastSeen, Limit: defaultPageSize}, ""},
		{"status=anomalous", FleetQuery{Status: StatusAnomalous, Sort: SortThing, Limit: defaultPageSize}, ""},
		{"status=online", FleetQuery{}, `status "online": want connected, offline, anomalous or all`},
		{"sort=name", FleetQuery{}, `sort "name": want thing, last_seen, rate, messages or anomalies`},
		{"desc=yes", FleetQuery{}, `desc "yes": want true or false`},
		{"limit=0", FleetQuery{}, `limit "0": want a whole number from 1 to 500`},
		{"limit=501", FleetQuery{}, `limit "501": want a whole number from 1 to 500`},
		{"offset=-1", FleetQuery{}, `offset "-1": want a whole number from 0 to 2147483647`},
		{"offset=1e3", FleetQuery{}, `offset "1e3": want a whole number`},
		{"q=" + strings.Repeat("x", maxSearch+1), FleetQuery{}, "q: longer than 256 bytes"},
	} {
		v, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseFleetQuery(v)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.query, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.query, got, err, tc.want)
		}
	}
}

func FuzzParseFleetQuery(f *testing.F) {
	for _, s := range []string{"", "q=a&status=offline&sort=messages&desc=true&offset=3&limit=9", "limit=%zz", "offset=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		q, err := ParseFleetQuery(v)
		if err != nil {
			return
		}
		if q.Limit < 1 || q.Limit > maxPageSize || q.Offset < 0 || len(q.Search) > maxSearch {
			t.Fatalf("%q: out of bounds %+v", s, q)
		}
		// A parsed query lists without panicking on any index.
		f := newFleet()
		f.publish("a", "t", 1)
		f.presence("b", true, 2)
		page := f.list(q, 3)
		if len(page.Things) > q.Limit {
			t.Fatalf("%q: %d rows, limit %d", s, len(page.Things), q.Limit)
		}
	})
}

// testFleet is five things: a and b connected, c offline with an
// anomaly, d only published, E only seeded from ClickHouse.
func testFleet(now int64) *fleet {
	f := newFleet()
	f.presence("a", true, now-5000)
	f.publish("a", "s/a", now-4000)
	f.publish("a", "s/a", now-3000)
	f.presence("b", true, now-2000)
	f.presence("c", true, now-9000)
	f.publish("c", "s/c", now-8000)
	f.presence("c", false, now-7000)
	f.anomaly("c", now-7500)
	f.publish("d", "s/d", now-1000)
	f.seedTelemetry("E", 10, now-60000, now-30000, "s/E")
	return f
}

func names(ts []Thing) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out
}

func TestFleetList(t *testing.T) {
	const now = 1_000_000_000
	f := testFleet(now)
	for _, tc := range []struct {
		q                       FleetQuery
		want                    []string
		matched, total, connect int
	}{
		{FleetQuery{Sort: SortThing, Limit: 50}, []string{"E", "a", "b", "c", "d"}, 5, 5, 2},
		{FleetQuery{Sort: SortThing, Limit: 2, Offset: 2}, []string{"b", "c"}, 5, 5, 2},
		{FleetQuery{Sort: SortThing, Limit: 2, Offset: 10}, nil, 5, 5, 2},
		{FleetQuery{Status: StatusConnected, Sort: SortThing, Limit: 50}, []string{"a", "b"}, 2, 5, 2},
		{FleetQuery{Status: StatusOffline, Sort: SortThing, Limit: 50}, []string{"E", "c", "d"}, 3, 5, 2},
		{FleetQuery{Status: StatusAnomalous, Sort: SortThing, Limit: 50}, []string{"c"}, 1, 5, 2},
		{FleetQuery{Search: "e", Sort: SortThing, Limit: 50}, []string{"E"}, 1, 5, 2},
		{FleetQuery{Sort: SortLastSeen, Desc: true, Limit: 50}, []string{"d", "b", "a", "c", "E"}, 5, 5, 2},
		{FleetQuery{Sort: SortMessages, Desc: true, Limit: 3}, []string{"E", "a", "d"}, 5, 5, 2},
		// Ties (no anomalies) break by name, in the sort's direction.
		{FleetQuery{Sort: SortAnomalies, Desc: true, Limit: 50}, []string{"c", "d", "b", "a", "E"}, 5, 5, 2},
	} {
		p := f.list(tc.q, now)
		if !slices.Equal(names(p.Things), tc.want) || p.Matched != tc.matched || p.Total != tc.total || p.Connected != tc.connect {
			t.Errorf("%+v: %v matched %d total %d connected %d; want %v %d %d %d", tc.q, names(p.Things), p.Matched, p.Total, p.Connected,
				tc.want, tc.matched, tc.total, tc.connect)
		}
		if p.Things == nil {
			t.Errorf("%+v: nil rows (the page wants [])", tc.q)
		}
	}
}

func TestFleetRow(t *testing.T) {
	const now = 1_000_000_000
	f := testFleet(now)
	a, ok := f.thing("a", now)
	if !ok || !a.Connected || a.Messages != 2 || a.FirstSeen != now-5000 || a.LastSeen != now-3000 || a.LastTopic != "s/a" {
		t.Errorf("a: %+v %v", a, ok)
	}
	c, _ := f.thing("c", now)
	if c.Connected || c.Anomalies != 1 {
		t.Errorf("c: %+v, want offline with 1 anomaly", c)
	}
	// An anomaly older than the window is not open.
	c, _ = f.thing("c", now+anomalyWindow)
	if c.Anomalies != 0 {
		t.Errorf("c an hour later: %d open anomalies", c.Anomalies)
	}
	e, _ := f.thing("E", now)
	if e.Messages != 10 || e.FirstSeen != now-60000 || e.LastSeen != now-30000 || e.Rate != 0 {
		t.Errorf("E: %+v", e)
	}
	if _, ok := f.thing("zz", now); ok {
		t.Error("unknown thing found")
	}
}

func TestDecayedRate(t *testing.T) {
	f := newFleet()
	// 60 publishes 1 s apart: close to the steady state of 1/s.
	for i := range 600 {
		f.publish("x", "t", int64(i)*1000)
	}
	x, _ := f.thing("x", 599_000)
	if math.Abs(x.Rate-1) > 0.01 {
		t.Errorf("rate after 600 publishes 1 s apart: %v, want about 1/s", x.Rate)
	}
	// A minute (tau) of silence: 1/e of it.
	x, _ = f.thing("x", 599_000+60_000)
	if math.Abs(x.Rate-1/math.E) > 0.01 {
		t.Errorf("rate a minute later: %v, want about %v", x.Rate, 1/math.E)
	}
}

func TestTakeDirty(t *testing.T) {
	f := newFleet()
	f.publish("b", "t", 1)
	f.publish("a", "t", 2)
	f.publish("b", "t", 3)
	rows, reload := f.takeDirty(4, 10)
	if reload || !slices.Equal(names(rows), []string{"a", "b"}) {
		t.Fatalf("takeDirty: %v %v", names(rows), reload)
	}
	if rows, reload = f.takeDirty(4, 10); rows != nil || reload {
		t.Fatalf("nothing changed: %v %v", rows, reload)
	}
	for _, n := range []string{"c", "d", "e"} {
		f.presence(n, true, 5)
	}
	if rows, reload = f.takeDirty(6, 2); rows != nil || !reload {
		t.Fatalf("3 changed, at most 2: %v %v, want reload", rows, reload)
	}
	if rows, reload = f.takeDirty(6, 2); rows != nil || reload {
		t.Fatalf("after a reload: %v %v", rows, reload)
	}
}

func TestSQLString(t *testing.T) {
	for in, want := range map[string]string{
		"":          `''`,
		"gh-0001":   `'gh-0001'`,
		`it's`:      `'it\'s'`,
		`a\b`:       `'a\\b'`,
		"x\x00y":    `'x\0y'`,
		"'; DROP x": `'\'; DROP x'`,
	} {
		if got := sqlString(in); got != want {
			t.Errorf("sqlString(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestBoundCond(t *testing.T) {
	if got, want := boundCond([]int64{-1, 7, 42}), "`offset` <= arrayElement([-1,7,42], partition + 1)"; got != want {
		t.Errorf("boundCond: %s, want %s", got, want)
	}
	b := seedBounds{telemetry: []int64{-1, 10}, presence: []int64{5, 3}}
	if b.start(0) != 0 || b.start(1) != 4 {
		t.Errorf("start: %d %d, want 0 4", b.start(0), b.start(1))
	}
}

// BenchmarkFleetList is one page of the fleet list over 10,000 things:
// by name, and by rate with a search (the server side of the fleet
// page's first render and of a search).
func BenchmarkFleetList(b *testing.B) {
	f := newFleet()
	for i := range 10_000 {
		name := fmt.Sprintf("gh-%05d", i)
		f.presence(name, i%3 != 0, int64(i))
		f.publish(name, "greenhouse/"+name+"/telemetry", int64(i)+1)
	}
	for _, q := range []FleetQuery{{Sort: SortThing, Limit: 100}, {Search: "gh-00", Sort: SortRate, Desc: true, Limit: 100}} {
		b.Run(q.Sort, func(b *testing.B) {
			for b.Loop() {
				if p := f.list(q, 20_000); len(p.Things) != 100 {
					b.Fatal(len(p.Things))
				}
			}
		})
	}
}
