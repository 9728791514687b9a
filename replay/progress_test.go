package replay

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestProgressLine(t *testing.T) {
	var c Counter
	for range 2500 {
		c.add()
	}
	p := &Progress{what: "replay", total: 10000, read: &c, start: time.Unix(100, 0)}
	if got, want := p.Line(time.Unix(105, 0)), "replay: 2500 / 10000 records (25%), 500/s, about 15s left"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	p.total = 0
	if got := p.Line(time.Unix(105, 0)); got != "replay: 2500 records, 500/s" {
		t.Errorf("line without a total %q", got)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func TestProgressRedrawsAndErases(t *testing.T) {
	var w syncBuf
	var c Counter
	p := StartProgress(&w, "events", 10, &c, time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		n := strings.Count(w.b.String(), "events: ")
		w.mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	p.Stop()
	out := w.b.String()
	if !strings.Contains(out, "events: 0 / 10 records (0%)") || !strings.HasSuffix(out, "\r\033[K") {
		t.Errorf("progress output %q", out)
	}
}
