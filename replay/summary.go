package replay

import (
	"fmt"
	"time"
)

// AppendSummaryText appends a replay's summary as text: the events, then
// a line per rule with its counts (for stderr; stdout has the outputs).
func AppendSummaryText(dst []byte, s Summary) []byte {
	dst = fmt.Appendf(dst, "replay: %d events", s.Events)
	if s.Events > 0 {
		dst = fmt.Appendf(dst, " received from %s to %s", s.First.UTC().Format(time.RFC3339Nano), s.Last.UTC().Format(time.RFC3339Nano))
	}
	if s.Undecodable > 0 {
		dst = fmt.Appendf(dst, ", %d undecodable (skipped)", s.Undecodable)
	}
	dst = append(dst, '\n')
	width := len("rule")
	for _, r := range s.Rules {
		width = max(width, len(r.Rule))
	}
	dst = fmt.Appendf(dst, "  %-*s  %9s  %9s  %9s\n", width, "rule", "matched", "fired", "errors")
	for _, r := range s.Rules {
		dst = fmt.Appendf(dst, "  %-*s  %9d  %9d  %9d", width, r.Rule, r.Matched, r.Fired, r.Errors)
		if r.LastError != "" {
			dst = fmt.Appendf(dst, "  last error: %s", r.LastError)
		}
		dst = append(dst, '\n')
	}
	return dst
}
