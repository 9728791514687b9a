package rules

import (
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/encoding/json"

	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// ruleStats counts one rule's work; it outlives reloads (by rule name).
type ruleStats struct {
	matched, fired, errors atomic.Uint64

	mu        sync.Mutex
	last      []Output // newest last
	lastError string
}

func (s *ruleStats) fire(out any, at int64, keep int) {
	s.fired.Add(1)
	s.mu.Lock()
	if len(s.last) >= keep {
		copy(s.last, s.last[len(s.last)-keep+1:])
		s.last = s.last[:keep-1]
	}
	s.last = append(s.last, Output{Time: at, Output: out})
	s.mu.Unlock()
}

func (s *ruleStats) fail(err error) {
	s.errors.Add(1)
	s.mu.Lock()
	s.lastError = err.Error()
	s.mu.Unlock()
}

func (p *Processor) ruleStats(r *rulesql.Rule) *ruleStats {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	s, ok := p.stats[r.Name]
	if !ok {
		s = &ruleStats{}
		p.stats[r.Name] = s
	}
	return s
}

// Output is one recent output of a rule.
type Output struct {
	// Time is the event time of the output, Unix ms.
	Time int64 `json:"time"`
	// Output is the rule's output.
	Output any `json:"output"`
}

// RuleStatus describes one loaded rule.
type RuleStatus struct {
	Name  string `json:"name"`
	File  string `json:"file,omitempty"`
	Topic string `json:"topic"`
	// Kind is "select", "window", "duration" or "pewma".
	Kind    string   `json:"kind"`
	Actions []string `json:"actions,omitempty"`
	// ErrorAction is the error action's type, if any.
	ErrorAction string `json:"error_action,omitempty"`
	// Matched, Fired and Errors count events routed to the rule, outputs
	// (firings) and failed evaluations since the process started.
	Matched   uint64 `json:"matched"`
	Fired     uint64 `json:"fired"`
	Errors    uint64 `json:"errors"`
	LastError string `json:"last_error,omitempty"`
	// LastOutputs are the most recent outputs, oldest first.
	LastOutputs []Output `json:"last_outputs"`
}

// FileStatus describes one rule file of the watched directory.
type FileStatus struct {
	Path  string   `json:"path"`
	Rules []string `json:"rules"`
	// Error is the file's load error; its previous good version (Rules)
	// keeps running meanwhile.
	Error    string    `json:"error,omitempty"`
	Modified time.Time `json:"modified"`
}

// Status is what GET /api/rules returns.
type Status struct {
	Dir      string       `json:"dir,omitempty"`
	LoadedAt time.Time    `json:"loaded_at"`
	Rules    []RuleStatus `json:"rules"`
	Files    []FileStatus `json:"files,omitempty"`
	// Errors is the number of files whose last load failed.
	Errors int `json:"errors"`
}

// Status returns the loaded rules with their counters and recent
// outputs, and the load state of every rule file.
func (p *Processor) Status() Status {
	l := p.cur.Load()
	st := Status{LoadedAt: l.at, Rules: []RuleStatus{}}
	for _, r := range l.set.Rules {
		s := l.info[r].stats
		rs := RuleStatus{Name: r.Name, File: r.File, Topic: r.Topic, Kind: ruleKind(r),
			Matched: s.matched.Load(), Fired: s.fired.Load(), Errors: s.errors.Load()}
		for _, a := range r.Actions {
			rs.Actions = append(rs.Actions, a.Type)
		}
		if r.ErrorAction != nil {
			rs.ErrorAction = r.ErrorAction.Type
		}
		s.mu.Lock()
		rs.LastOutputs = append([]Output{}, s.last...)
		rs.LastError = s.lastError
		s.mu.Unlock()
		for i, o := range rs.LastOutputs {
			if b, err := value.MarshalJSON(o.Output); err == nil {
				rs.LastOutputs[i].Output = json.RawMessage(b)
			}
		}
		st.Rules = append(st.Rules, rs)
	}
	p.reloadMu.Lock()
	st.Dir = p.dir
	for _, f := range p.files {
		fs := FileStatus{Path: f.path, Rules: append([]string{}, f.rules...), Modified: f.mod}
		if f.err != nil {
			fs.Error = f.err.Error()
			st.Errors++
		}
		st.Files = append(st.Files, fs)
	}
	p.reloadMu.Unlock()
	sort.Slice(st.Files, func(i, j int) bool { return st.Files[i].Path < st.Files[j].Path })
	return st
}

func ruleKind(r *rulesql.Rule) string {
	switch {
	case r.Window != nil:
		return "window"
	case r.For != nil:
		return "duration"
	case r.Stateful:
		return "pewma"
	}
	return "select"
}

// Handler serves GET /api/rules: the Status as JSON.
func (p *Processor) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		b, err := json.Marshal(p.Status())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
}

// metrics are the processor's Prometheus collectors.
type metrics struct {
	matched, fired, errors, anomalies, windows, late *prometheus.CounterVec
	actions                                          *prometheus.CounterVec
	reloads                                          *prometheus.CounterVec
	fileErrors                                       prometheus.Gauge
	loaded                                           prometheus.Gauge
}

func newMetrics() *metrics {
	perRule := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"rule"})
	}
	return &metrics{
		matched:   perRule("iotpipe_rules_matched_total", "Events routed to a rule (its topic filter matched)."),
		fired:     perRule("iotpipe_rules_fired_total", "Rule outputs (firings), by rule."),
		errors:    perRule("iotpipe_rules_errors_total", "Failed rule evaluations (error action or DLQ), by rule."),
		anomalies: perRule("iotpipe_rules_anomalies_total", "Points a rule's pewma() flagged, by rule."),
		windows:   perRule("iotpipe_rules_windows_closed_total", "Window results emitted, by rule."),
		late:      perRule("iotpipe_rules_late_events_total", "Events too late for their window (sent to the DLQ), by rule."),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_rules_actions_total", Help: "Action records written to the actions topic, by rule and action type.",
		}, []string{"rule", "type"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_rules_reloads_total", Help: "Rule directory reloads, by result (ok, error).",
		}, []string{"result"}),
		fileErrors: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "iotpipe_rules_file_errors", Help: "Rule files whose last load failed (their previous version keeps running).",
		}),
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "iotpipe_rules_loaded", Help: "Rules in the running set.",
		}),
	}
}

// Collectors returns the processor's Prometheus collectors for the caller
// to register: iotpipe_rules_matched_total, _fired_total, _errors_total,
// _anomalies_total, _windows_closed_total, _late_events_total (by rule),
// _actions_total (by rule and type), _reloads_total (by result),
// iotpipe_rules_file_errors and iotpipe_rules_loaded.
func (p *Processor) Collectors() []prometheus.Collector {
	m := p.metrics
	return []prometheus.Collector{m.matched, m.fired, m.errors, m.anomalies, m.windows, m.late, m.actions, m.reloads, m.fileErrors, m.loaded}
}
