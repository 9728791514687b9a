package web

import (
	"cmp"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// The status filters of the fleet list.
const (
	StatusConnected = "connected"
	StatusOffline   = "offline"
	// StatusAnomalous selects things with open anomalies.
	StatusAnomalous = "anomalous"
)

// The sort keys of the fleet list.
const (
	SortThing     = "thing"
	SortLastSeen  = "last_seen"
	SortRate      = "rate"
	SortMessages  = "messages"
	SortAnomalies = "anomalies"
)

// Page sizes of the fleet list.
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// maxSearch bounds the search text.
const maxSearch = 256

// FleetQuery is what GET /api/dashboard/fleet asks for: things whose
// name contains Search (any case) and whose state matches Status, sorted
// by Sort (descending with Desc), from Offset, at most Limit.
type FleetQuery struct {
	Search string
	Status string
	Sort   string
	Desc   bool
	Offset int
	Limit  int
}

// ParseFleetQuery reads a FleetQuery from the URL query parameters q,
// status, sort, desc, offset and limit; an unknown or out-of-range value
// is an error that names it and what is allowed.
func ParseFleetQuery(v url.Values) (FleetQuery, error) {
	q := FleetQuery{Search: strings.TrimSpace(v.Get("q")), Status: v.Get("status"), Sort: v.Get("sort"), Limit: defaultPageSize}
	if len(q.Search) > maxSearch {
		return q, fmt.Errorf("q: longer than %d bytes", maxSearch)
	}
	switch q.Status {
	case "", "all":
		q.Status = ""
	case StatusConnected, StatusOffline, StatusAnomalous:
	default:
		return q, fmt.Errorf("status %q: want connected, offline, anomalous or all", q.Status)
	}
	switch q.Sort {
	case "":
		q.Sort = SortThing
	case SortThing, SortLastSeen, SortRate, SortMessages, SortAnomalies:
	default:
		return q, fmt.Errorf("sort %q: want thing, last_seen, rate, messages or anomalies", q.Sort)
	}
	switch d := v.Get("desc"); d {
	case "", "0", "false":
	case "1", "true":
		q.Desc = true
	default:
		return q, fmt.Errorf("desc %q: want true or false", d)
	}
	var err error
	if q.Offset, err = intParam(v, "offset", 0, 0, 1<<31-1); err != nil {
		return q, err
	}
	if q.Limit, err = intParam(v, "limit", defaultPageSize, 1, maxPageSize); err != nil {
		return q, err
	}
	return q, nil
}

// intParam reads the integer parameter name in [lo, hi], def when absent.
func intParam(v url.Values, name string, def, lo, hi int) (int, error) {
	s := v.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s %q: want a whole number from %d to %d", name, s, lo, hi)
	}
	return n, nil
}

// compare orders two rows as q sorts them; ties are broken by name, so
// pages never overlap.
func (q FleetQuery) compare(a, b Thing) int {
	var c int
	switch q.Sort {
	case SortLastSeen:
		c = cmp.Compare(a.LastSeen, b.LastSeen)
	case SortRate:
		c = cmp.Compare(a.Rate, b.Rate)
	case SortMessages:
		c = cmp.Compare(a.Messages, b.Messages)
	case SortAnomalies:
		c = cmp.Compare(a.Anomalies, b.Anomalies)
	}
	if c == 0 {
		c = strings.Compare(a.Name, b.Name)
	}
	if q.Desc {
		return -c
	}
	return c
}
