package replay

import (
	"testing"
	"time"
)

func TestSummaryText(t *testing.T) {
	s := Summary{Events: 3, Undecodable: 1, First: t0, Last: t0.Add(1500 * time.Millisecond), Rules: []RuleStats{
		{Rule: "hot", Matched: 3, Fired: 2}, {Rule: "a_longer_name", Matched: 1, Errors: 1, LastError: "boom"},
	}}
	want := `replay: 3 events received from 2026-03-01T12:00:00Z to 2026-03-01T12:00:01.5Z, 1 undecodable (skipped)
  rule             matched      fired     errors
  hot                    3          2          0
  a_longer_name          1          0          1  last error: boom
`
	if got := string(AppendSummaryText(nil, s)); got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
}
