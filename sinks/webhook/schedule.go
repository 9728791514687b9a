package webhook

import (
	"slices"
	"time"
)

// Firings are scheduled per target (scheme://host:port) and, within a
// target, per rule: a target has TargetConcurrency slots (requests in
// flight), a rule at most RuleConcurrency of them, and a freed slot goes
// to the rule with the fewest requests in flight. A firing holds a slot
// only during an attempt: while it waits for its next attempt it holds
// none. So a rule whose target hangs holds at most RuleConcurrency slots
// for at most one RequestTimeout at a time, and never starves the other
// rules of the target. Everything here is guarded by Executor.mu.

// host is one target.
type host struct {
	name    string
	active  int // requests in flight
	waiting int // firings queued or waiting for their next attempt
	rules   map[string]*unit
	ready   []*unit       // rules with queued firings, longest ready first
	space   chan struct{} // signalled when waiting drops
	warned  time.Time     // last "queue full" log
}

// unit is one rule's firings to one target.
type unit struct {
	h      *host
	rule   string
	jobs   []*job // queued, oldest first
	active int    // requests in flight
	ready  bool   // in h.ready
}

// hostFor returns target's host, created on first use.
func (e *Executor) hostFor(target string) *host {
	h := e.hosts[target]
	if h == nil {
		h = &host{name: target, rules: map[string]*unit{}, space: make(chan struct{}, 1)}
		e.hosts[target] = h
	}
	return h
}

// wait counts a firing in or out of h's waiting ones.
func (e *Executor) wait(h *host, n int) {
	h.waiting += n
	e.metrics.queued.WithLabelValues(h.name).Add(float64(n))
	if n < 0 {
		select {
		case h.space <- struct{}{}:
		default:
		}
	}
}

// queue puts j at the back of its rule's queue on its target (counted
// in waiting by the caller).
func (e *Executor) queue(j *job) {
	h := e.hostFor(j.req.target)
	u := h.rules[j.req.rule]
	if u == nil {
		u = &unit{h: h, rule: j.req.rule}
		h.rules[j.req.rule] = u
	}
	j.u = u
	u.jobs = append(u.jobs, j)
	if !u.ready {
		u.ready = true
		h.ready = append(h.ready, u)
	}
}

// pump starts attempts on h while it has a free slot and a rule below
// RuleConcurrency has a queued firing: the rule with the fewest requests
// in flight first, the longest ready on a tie.
func (e *Executor) pump(h *host) {
	for h.active < e.opts.TargetConcurrency && !e.stopping {
		best := -1
		for i, u := range h.ready {
			if u.active < e.opts.RuleConcurrency && (best < 0 || u.active < h.ready[best].active) {
				best = i
			}
		}
		if best < 0 {
			return
		}
		u := h.ready[best]
		j := u.jobs[0]
		u.jobs[0] = nil
		u.jobs = u.jobs[1:]
		h.ready = slices.Delete(h.ready, best, best+1)
		if len(u.jobs) > 0 {
			h.ready = append(h.ready, u) // its turn is over
		} else {
			u.ready = false
		}
		e.wait(h, -1)
		if j.part.revoked {
			e.releaseSlot()
			continue
		}
		u.active++
		h.active++
		j.part.busy++
		e.busy++
		e.start(j)
	}
}

// workerIdle is how long a worker waits for another attempt before it
// exits.
const workerIdle = 30 * time.Second

// start hands j's attempt to an idle worker, or to a new one. Workers
// are kept between attempts (as many as requests were in flight at
// once) because a new goroutine grows its stack again for every HTTP
// request, which cost 6% of the executor's CPU.
func (e *Executor) start(j *job) {
	select {
	case e.work <- j:
	default:
		go e.worker(j)
	}
}

// worker makes attempts until it has been idle for workerIdle or Run
// has returned.
func (e *Executor) worker(j *job) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		e.attempt(j)
		t.Reset(workerIdle)
		select {
		case j = <-e.work:
		case <-t.C:
			return
		case <-e.quit:
			return
		}
	}
}

// purge drops the queued firings drop selects, leaving them undone.
func (e *Executor) purge(drop func(*job) bool) {
	for _, h := range e.hosts {
		for _, u := range h.rules {
			kept := u.jobs[:0]
			for _, j := range u.jobs {
				if drop(j) {
					e.wait(h, -1)
					e.releaseSlot()
				} else {
					kept = append(kept, j)
				}
			}
			clear(u.jobs[len(kept):])
			u.jobs = kept
			if len(u.jobs) == 0 && u.ready {
				u.ready = false
				h.ready = slices.DeleteFunc(h.ready, func(x *unit) bool { return x == u })
			}
		}
	}
}

// sweep forgets the rules and targets with nothing queued, waiting or
// in flight (targets can come and go with the rules' URLs). It runs now
// and then, not after each request: a target in use would be made again
// and again.
func (e *Executor) sweep() {
	for name, h := range e.hosts {
		for rule, u := range h.rules {
			if u.active == 0 && len(u.jobs) == 0 {
				delete(h.rules, rule)
			}
		}
		if h.active == 0 && h.waiting == 0 && len(h.rules) == 0 {
			delete(e.hosts, name)
		}
	}
}
