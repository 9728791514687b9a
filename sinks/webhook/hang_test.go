package webhook

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"testing"
)

// hangServer is a webhook host with two kinds of paths: /hang holds every
// request while hanging is set (until the client gives up), then accepts;
// every other path is the receiver rv (accepts at once). It counts the
// requests that reached /hang per key.
type hangServer struct {
	rv *receiver

	mu       sync.Mutex
	hanging  bool
	release  chan struct{}
	arrivals map[string]int // requests that reached /hang, by key
	held     int            // /hang requests being held now
}

func newHangServer(t testing.TB) *hangServer {
	return &hangServer{rv: newReceiver(t, nil), hanging: true, release: make(chan struct{}), arrivals: map[string]int{}}
}

func (s *hangServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/hang" {
		s.rv.ServeHTTP(w, r)
		return
	}
	key := r.Header.Get(HeaderIdempotencyKey)
	// Read the body first: the server notices a client that gives up
	// (and cancels r's context) only once the body was read.
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	s.mu.Lock()
	s.arrivals[key]++
	hanging, release := s.hanging, s.release
	if hanging {
		s.held++
	}
	s.mu.Unlock()
	if hanging {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		s.mu.Lock()
		s.held--
		s.mu.Unlock()
		if r.Context().Err() != nil {
			return // the client gave up: nothing accepted
		}
	}
	s.rv.ServeHTTP(w, r)
}

// stopHanging lets held and later /hang requests through.
func (s *hangServer) stopHanging() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hanging {
		s.hanging = false
		close(s.release)
	}
}

func (s *hangServer) heldNow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

func (s *hangServer) arrived(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.arrivals[key]
}
