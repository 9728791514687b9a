package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// phase says when a part of the node stops. Phases stop one after the
// other in this order, each only once the one before it has ended, so a
// part never outlives what it uses: whatever a stage of phase p uses is
// closed in phase p or later.
type phase int

const (
	// acceptPhase stops taking work: the MQTT listeners (clients are
	// disconnected) and the HTTP server. Nothing new is acknowledged after.
	acceptPhase phase = iota
	// ingestPhase flushes the ingest producer: every record a client was
	// promised is written to the log (or failed).
	ingestPhase
	// processPhase stops the processors: each partition finishes or
	// abandons its batch, and the state store closes.
	processPhase
	// sinkPhase stops the sinks and executors, which flush what they hold.
	sinkPhase
	// storePhase stops the embedded ClickHouse, then the embedded log.
	storePhase
	numPhases
)

var phaseNames = [numPhases]string{"accept", "ingest", "process", "sink", "store"}

func (p phase) String() string { return phaseNames[p] }

// A stage is one long-running part of the node: run works until its
// context ends, then drains and returns. An error it returns before its
// context ended stops the node.
type stage struct {
	name string
	done chan struct{}
}

// closer releases a resource once every stage of its phase has returned.
type closer struct {
	name string
	fn   func(ctx context.Context) error
}

type phaseState struct {
	ctx     context.Context
	cancel  context.CancelFunc
	stages  []*stage
	closers []closer
}

// lifecycle runs a node's stages and stops them phase by phase within a
// deadline. Start-up adds stages as it goes; if start-up fails, stop
// undoes what was started, in the same order as a normal shutdown.
type lifecycle struct {
	log    *slog.Logger
	phases [numPhases]phaseState
	// failed receives the first error of a stage that stopped on its own.
	failed chan error

	mu      sync.Mutex
	running map[string]phase // stages and closers not yet finished
	drain   []error          // errors of stages and closers while stopping
}

func newLifecycle(log *slog.Logger) *lifecycle {
	lc := &lifecycle{log: log, failed: make(chan error, 1), running: map[string]phase{}}
	for i := range lc.phases {
		lc.phases[i].ctx, lc.phases[i].cancel = context.WithCancel(context.Background())
	}
	return lc
}

// ctx is the context of phase p's stages: it ends when p stops. Parts
// that keep the context they are started with get this one.
func (lc *lifecycle) ctx(p phase) context.Context { return lc.phases[p].ctx }

// run starts a stage of phase p: run(ctx) on its own goroutine, with ctx
// ending when p stops.
func (lc *lifecycle) run(p phase, name string, run func(ctx context.Context) error) {
	ph := &lc.phases[p]
	s := &stage{name: name, done: make(chan struct{})}
	ph.stages = append(ph.stages, s)
	lc.setRunning(p, name, true)
	go func() {
		defer close(s.done)
		err := run(ph.ctx)
		lc.setRunning(p, name, false)
		if ph.ctx.Err() == nil {
			if err == nil {
				err = errors.New("stopped on its own")
			}
			select {
			case lc.failed <- fmt.Errorf("%s: %w", name, err):
			default:
			}
			return
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			lc.drainErr(fmt.Errorf("%s: %w", name, err))
		}
	}()
}

// onStop registers fn to run when phase p stops, after all of p's stages
// returned; a phase's closers run in reverse order of registration. ctx
// ends at the drain deadline.
func (lc *lifecycle) onStop(p phase, name string, fn func(ctx context.Context) error) {
	lc.phases[p].closers = append(lc.phases[p].closers, closer{name: name, fn: fn})
}

// until adapts a part with today's Start/Stop shape (already started) to
// a stage: it waits for the stage's context, then stops the part.
func until(stop func() error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		return stop()
	}
}

func (lc *lifecycle) setRunning(p phase, name string, on bool) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if on {
		lc.running[name] = p
	} else {
		delete(lc.running, name)
	}
}

func (lc *lifecycle) drainErr(err error) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.drain = append(lc.drain, err)
}

// stop stops the phases in order within timeout. It returns nil when
// everything stopped cleanly; past the deadline it returns an error
// naming what did not finish (the caller exits: those goroutines may
// still use what the later phases would close).
func (lc *lifecycle) stop(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	for p := range numPhases {
		ph := &lc.phases[p]
		if len(ph.stages) == 0 && len(ph.closers) == 0 {
			ph.cancel()
			continue
		}
		lc.log.Debug("stopping", "phase", p.String())
		done := make(chan struct{})
		go func() {
			defer close(done)
			ph.cancel()
			for _, s := range ph.stages {
				<-s.done
			}
			for i := len(ph.closers) - 1; i >= 0; i-- {
				c := ph.closers[i]
				lc.setRunning(p, c.name, true)
				if err := c.fn(ctx); err != nil {
					lc.drainErr(fmt.Errorf("%s: %w", c.name, err))
				}
				lc.setRunning(p, c.name, false)
			}
		}()
		select {
		case <-done:
			lc.log.Info("stopped", "phase", p.String(), "after", time.Since(start).Round(time.Millisecond))
		case <-ctx.Done():
			for q := p + 1; q < numPhases; q++ {
				lc.phases[q].cancel()
			}
			lc.mu.Lock()
			var names []string
			for n, q := range lc.running {
				if q == p {
					names = append(names, n)
				}
			}
			lc.mu.Unlock()
			slices.Sort(names)
			return fmt.Errorf("drain did not finish within %s (--drain-timeout): still running in the %s phase: %v; exiting without them (what they did not finish is redone from the log at the next start)",
				timeout, p, names)
		}
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return errors.Join(lc.drain...)
}
