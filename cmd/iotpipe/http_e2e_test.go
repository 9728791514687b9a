package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"
)

// Many slow HTTP clients — some send half their headers, some announce a
// body that never arrives — do not take /healthz down, and the server
// closes each of them once --http-read-timeout passed. Before, a request
// whose body never came was held open forever (the issue saw 19,950 of
// them take every descriptor).
func TestHTTPSlowClientsAreClosed(t *testing.T) {
	in := newInstance(t)
	in.start("--http-read-timeout", "3s")
	const perKind = 300
	starts := map[string]string{
		"headers never end": "POST /topics/slow HTTP/1.1\r\nHost: x\r\nX-Client-Id: slow",
		"body never comes":  "POST /topics/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"a\":",
	}
	type slow struct {
		kind string
		c    net.Conn
	}
	var conns []slow
	t.Cleanup(func() {
		for _, s := range conns {
			s.c.Close()
		}
	})
	for kind, start := range starts {
		for i := 0; i < perKind; i++ {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", in.http))
			if err != nil {
				t.Fatalf("dial %d: %v", len(conns), err)
			}
			if _, err := io.WriteString(c, start); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, slow{kind, c})
		}
	}
	// /healthz answers while they hang.
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 5; i++ {
		resp, err := client.Get(in.url("/healthz"))
		if err != nil {
			t.Fatalf("/healthz with %d slow clients: %v", len(conns), err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/healthz with %d slow clients: %s", len(conns), resp.Status)
		}
	}
	// Each slow connection is closed by the server (EOF or reset; a 408
	// answer first is fine); 60 s is far above the 3 s timeout.
	deadline := time.Now().Add(60 * time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[string]int{}
	for _, s := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.c.SetReadDeadline(deadline)
			_, err := io.Copy(io.Discard, s.c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				mu.Lock()
				open[s.kind]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for kind, n := range open {
		t.Errorf("%s: %d of %d connections still open 60 s after they stalled (--http-read-timeout 3s)", kind, n, perKind)
	}
	resp, err := client.Get(in.url("/healthz"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
