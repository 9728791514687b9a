package webhook_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/sinks/webhook"
	"github.com/prometheus/client_golang/prometheus"
)

// A receiver checks the signature and the timestamp before trusting the
// body, and drops duplicates by Idempotency-Key.
func ExampleVerifyRequest() {
	secret := []byte("shared-secret")
	seen := map[string]bool{}
	handler := func(w http.ResponseWriter, r *http.Request) {
		body, err := webhook.VerifyRequest(r, secret, time.Now(), 5*time.Minute)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		key := r.Header.Get(webhook.HeaderIdempotencyKey)
		if !seen[key] {
			seen[key] = true
			fmt.Printf("firing %s: %s\n", key, body)
		}
		w.WriteHeader(http.StatusNoContent)
	}

	// What the executor sends:
	body := `{"thing":"gh-7","event":"disconnected"}`
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	r := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(body))
	r.Header.Set(webhook.HeaderIdempotencyKey, "3/1042/offline-alert/0")
	r.Header.Set(webhook.HeaderTimestamp, ts)
	r.Header.Set(webhook.HeaderSignature, webhook.Sign(secret, ts, []byte(body)))
	w := httptest.NewRecorder()
	handler(w, r)
	fmt.Println(w.Code)
	// Output:
	// firing 3/1042/offline-alert/0: {"thing":"gh-7","event":"disconnected"}
	// 204
}

func ExampleExecutor() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	lg, err := eventlog.Open(ctx, eventlog.Options{Brokers: []string{"localhost:9092"}})
	if err != nil {
		log.Fatal(err)
	}
	e, err := webhook.New(webhook.Options{
		Clients: lg,
		Secret:  []byte("shared-secret"),
	})
	if err != nil {
		log.Fatal(err)
	}
	prometheus.MustRegister(e.Collectors()...)
	// Delivers until ctx ends, then drains and returns.
	if err := e.Run(ctx); err != nil {
		log.Print(err)
	}
}
