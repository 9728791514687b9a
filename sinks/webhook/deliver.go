package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Outcome kinds of one firing's delivery.
const (
	kindDelivered = "delivered"
	// kindRejected: the target answered with a status that retrying cannot
	// fix (3xx, 4xx other than 408 and 429).
	kindRejected = "rejected"
	// kindExhausted: retries ran out (attempts or elapsed time).
	kindExhausted = "exhausted"
	// kindInvalid: the action cannot become a request (no url, ...).
	kindInvalid = "invalid"
	// kindCanceled: the executor stopped mid-delivery; the record is not
	// acknowledged and will be redelivered.
	kindCanceled = "canceled"
)

// outcome is how one firing's delivery ended.
type outcome struct {
	kind     string
	status   int    // last HTTP status, 0 if none
	err      error  // last error (network, or a status error)
	body     string // start of the last response body
	attempts int
	first    time.Time // start of the first attempt
	last     time.Time // end of the last attempt
}

// policy is the retry policy of Options.
type policy struct {
	timeout       time.Duration
	maxAttempts   int
	maxElapsed    time.Duration
	initial       time.Duration
	max           time.Duration
	maxRetryAfter time.Duration
}

// backoff returns the full-jitter wait after failed attempt n (1-based):
// uniform in [0, min(max, initial*2^(n-1))]. rnd(k) returns [0, k).
func (p policy) backoff(n int, rnd func(int64) int64) time.Duration {
	ceil := p.initial
	for i := 1; i < n && ceil < p.max; i++ {
		ceil *= 2
	}
	ceil = min(ceil, p.max)
	if ceil <= 0 {
		return 0
	}
	return time.Duration(rnd(int64(ceil) + 1))
}

// retryable reports whether a response status is worth another attempt.
func retryable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if sec, err := strconv.ParseInt(v, 10, 64); err == nil {
		if sec < 0 {
			return 0, false
		}
		return time.Duration(min(sec, int64(time.Duration(1<<62)/time.Second))) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// maxBodySnippet bounds the response body kept for the dead-letter reason.
const maxBodySnippet = 256

// maxDrain bounds how much of a response body is read to reuse the
// connection.
const maxDrain = 64 << 10

// deliverer sends requests with the retry policy. now and rnd are
// swappable in tests.
type deliverer struct {
	client    *http.Client
	policy    policy
	userAgent string
	metrics   *metrics
	now       func() time.Time
	rnd       func(int64) int64
}

func newDeliverer(client *http.Client, p policy, m *metrics) *deliverer {
	return &deliverer{
		client:    client,
		policy:    p,
		userAgent: "iotpipe-webhook/1",
		metrics:   m,
		now:       time.Now,
		rnd:       rand.Int64N,
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// try makes the next attempt of req and records it in out. It returns
// done once out.kind says how the delivery ended (delivered, rejected,
// exhausted, or canceled when ctx ended), else the wait before the next
// attempt: the caller waits without holding a slot of the target, then
// calls try again with the same out.
func (d *deliverer) try(ctx context.Context, req *request, out *outcome) (wait time.Duration, done bool) {
	if out.attempts == 0 {
		out.first = d.now()
	}
	out.attempts++
	status, retryAfter, body, err := d.attempt(ctx, req)
	out.last = d.now()
	if ctx.Err() != nil {
		out.kind, out.err = kindCanceled, ctx.Err()
		return 0, true
	}
	out.status, out.body = status, body
	switch {
	case err != nil:
		out.err = err
	case status >= 200 && status < 300:
		out.kind, out.err = kindDelivered, nil
		return 0, true
	default:
		out.err = fmt.Errorf("http status %d %s", status, http.StatusText(status))
		if !retryable(status) {
			out.kind = kindRejected
			return 0, true
		}
	}
	if out.attempts >= d.policy.maxAttempts {
		out.kind = kindExhausted
		return 0, true
	}
	wait = d.policy.backoff(out.attempts, d.rnd)
	if retryAfter >= 0 {
		wait = min(retryAfter, d.policy.maxRetryAfter)
	}
	if out.last.Add(wait).Sub(out.first) > d.policy.maxElapsed {
		out.kind = kindExhausted
		return 0, true
	}
	if d.metrics != nil {
		d.metrics.retried.WithLabelValues(req.target).Inc()
	}
	return wait, false
}

// attempt sends req once. retryAfter is -1 unless a 429 or 503 response
// carried a valid Retry-After header.
func (d *deliverer) attempt(ctx context.Context, req *request) (status int, retryAfter time.Duration, body string, err error) {
	retryAfter = -1
	timeout := d.policy.timeout
	if req.timeout > 0 {
		timeout = req.timeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(actx, http.MethodPost, req.url, bytes.NewReader(req.body))
	if err != nil {
		return 0, retryAfter, "", fmt.Errorf("build request: %w", err)
	}
	for k, v := range req.headers {
		hr.Header[k] = v
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", d.userAgent)
	hr.Header.Set(HeaderIdempotencyKey, req.key)
	if len(req.secret) > 0 {
		ts := strconv.FormatInt(d.now().Unix(), 10)
		hr.Header.Set(HeaderTimestamp, ts)
		hr.Header.Set(HeaderSignature, Sign(req.secret, ts, req.body))
	}
	start := time.Now()
	resp, err := d.client.Do(hr)
	if d.metrics != nil {
		d.metrics.requestDuration.WithLabelValues(req.target).Observe(time.Since(start).Seconds())
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("post %s: no response within %s: %w", req.target, timeout, err)
		} else {
			err = fmt.Errorf("post %s: %w", req.target, err)
		}
		return 0, retryAfter, "", err
	}
	defer resp.Body.Close()
	snippet := make([]byte, maxBodySnippet)
	n, _ := io.ReadFull(resp.Body, snippet)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if ra, ok := parseRetryAfter(resp.Header.Get("Retry-After"), d.now()); ok {
			retryAfter = ra
		}
	}
	return resp.StatusCode, retryAfter, string(snippet[:n]), nil
}
