package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// LossCheck compares what the publishers had acknowledged with the
// telemetry rows, per step (its client id prefix) and for the probes.
type LossCheck struct {
	Groups []LossGroup `json:"groups"`
	// Lost counts acknowledged publishes with no row; Duplicates rows
	// beyond the first for one publish. Both must be 0.
	Lost       uint64 `json:"lost"`
	Duplicates uint64 `json:"duplicates"`
	Acked      uint64 `json:"acked"`
	Rows       uint64 `json:"rows"`
}

// LossGroup is one group of publishers: acknowledged and sent publishes,
// rows and distinct (thing, seq) among them.
type LossGroup struct {
	Prefix string `json:"prefix"`
	Acked  uint64 `json:"acked"`
	Sent   uint64 `json:"sent"`
	Rows   uint64 `json:"rows"`
	Unique uint64 `json:"unique"`
}

// OK says nothing was lost or stored twice.
func (l *LossCheck) OK() bool { return l.Lost == 0 && l.Duplicates == 0 }

// checkLoss counts the telemetry rows of every step and of the probes
// (after the last drain, so every logged record is a row).
func (pt *part) checkLoss(ctx context.Context) (*LossCheck, error) {
	out, err := pt.in.query(ctx, "SELECT splitByChar('-', thing)[1] AS p, count(), uniqExact(thing, metrics['seq']) "+
		"FROM telemetry WHERE topic LIKE 'bench/%/telemetry' GROUP BY p FORMAT TSV")
	if err != nil {
		return nil, fmt.Errorf("%s: count the telemetry rows: %w", pt.name, err)
	}
	rows, err := parseCounts(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pt.name, err)
	}
	groups := map[string]*LossGroup{}
	var order []string
	add := func(prefix string, acked, sent uint64) {
		g := groups[prefix]
		if g == nil {
			g = &LossGroup{Prefix: prefix}
			groups[prefix] = g
			order = append(order, prefix)
		}
		g.Acked += acked
		g.Sent += sent
	}
	for _, st := range pt.steps {
		add(st.Prefix, st.Load.TotalAcked, st.Load.TotalSent)
	}
	if pt.pr != nil {
		pt.pr.mu.Lock()
		for _, n := range pt.pr.acked {
			add("probe", uint64(n), uint64(n))
		}
		pt.pr.mu.Unlock()
	}
	lc := &LossCheck{}
	for p, c := range rows {
		if groups[p] == nil {
			add(p, 0, 0) // rows of publishers the harness does not know: reported, not checked
		}
		groups[p].Rows, groups[p].Unique = c[0], c[1]
	}
	for _, p := range order {
		g := groups[p]
		lc.Groups = append(lc.Groups, *g)
		lc.Acked += g.Acked
		lc.Rows += g.Rows
		if g.Unique < g.Acked {
			lc.Lost += g.Acked - g.Unique
		}
		lc.Duplicates += g.Rows - g.Unique
	}
	return lc, nil
}

// parseCounts reads "prefix\tcount\tunique" lines.
func parseCounts(tsv string) (map[string][2]uint64, error) {
	out := map[string][2]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(tsv), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("row counts: unexpected line %q", line)
		}
		n, err1 := strconv.ParseUint(f[1], 10, 64)
		u, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || u > n {
			return nil, fmt.Errorf("row counts: unexpected line %q", line)
		}
		out[f[0]] = [2]uint64{n, u}
	}
	return out, nil
}
