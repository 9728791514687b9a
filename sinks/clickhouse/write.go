package clickhouse

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// batch is what one flush writes: the groups of a set of polls, their
// DLQ records and the offsets to commit once both are stored.
type batch struct {
	groups  []*group // sorted by table, topic, partition, first offset
	dlq     []*kgo.Record
	handled map[string]map[int32]kgo.EpochOffset
}

// takeBatch moves everything pending into a batch and starts afresh.
func (s *Sink) takeBatch() *batch {
	b := &batch{dlq: s.dlq, handled: s.handled}
	for _, g := range s.pending {
		b.groups = append(b.groups, g)
	}
	slices.SortFunc(b.groups, func(a, b *group) int {
		return cmp.Or(cmp.Compare(a.key.table, b.key.table), cmp.Compare(a.key.topic, b.key.topic),
			cmp.Compare(a.key.partition, b.key.partition), cmp.Compare(a.first, b.first))
	})
	s.pending = map[groupKey]*group{}
	s.pendingRows = 0
	s.dlq = nil
	s.handled = map[string]map[int32]kgo.EpochOffset{}
	s.polled = false
	return b
}

// flush writes everything pending and waits for it.
func (s *Sink) flush(ctx context.Context) error {
	return s.write(ctx, s.takeBatch())
}

// write inserts every group of b (each source partition's groups in
// offset order, partitions side by side), sends the DLQ records, then
// commits b's offsets. It returns only a context error: ClickHouse
// failures are retried.
func (s *Sink) write(ctx context.Context, b *batch) error {
	// Each source partition's groups for one table form a chain that is
	// inserted in offset order; chains run side by side.
	var chains [][]*group
	for i, g := range b.groups {
		if i == 0 || hwOf(b.groups[i-1]) != hwOf(g) {
			chains = append(chains, nil)
		}
		chains[len(chains)-1] = append(chains[len(chains)-1], g)
	}
	type outcome struct {
		err  error
		took time.Duration
		done bool
	}
	outcomes := make([]outcome, len(b.groups))
	index := make(map[*group]int, len(b.groups))
	for i, g := range b.groups {
		index[g] = i
	}
	sem := make(chan struct{}, s.opts.InsertConcurrency)
	var wg sync.WaitGroup
	for _, chain := range chains {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for _, g := range chain {
				start := time.Now()
				err := s.retry(ctx, "insert into "+g.key.table, g.key.table, func(ctx context.Context) error {
					if g.gen != s.generation() {
						return errPartitionMoved
					}
					return s.insert(ctx, g)
				})
				outcomes[index[g]] = outcome{err: err, took: time.Since(start), done: true}
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	lost := false
	for i, g := range b.groups {
		o := outcomes[i]
		switch {
		case !o.done:
			continue
		case errors.Is(o.err, errPartitionMoved):
			// The group lost the partition (kicked out during a long
			// outage): its new owner reads these records again.
			s.log.Warn("partitions moved while rows were pending; leaving them to the new owner", "table", g.key.table, "partition", g.key.partition, "rows", g.cols.len())
			lost = true
		case o.err != nil:
			return o.err
		default:
			s.opts.Metrics.Inserted(g.key.table, g.cols.len(), o.took)
			s.setHW(hwOf(g), g.last)
		}
		s.release(g)
	}
	if len(b.dlq) > 0 {
		if err := s.retry(ctx, "produce to the DLQ", "", func(ctx context.Context) error {
			return s.cl.ProduceSync(ctx, b.dlq...).FirstErr()
		}); err != nil {
			return err
		}
	}
	if lost {
		return nil
	}
	var commitErr error
	s.cl.CommitOffsetsSync(ctx, b.handled, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		commitErr = err
	})
	if commitErr != nil {
		// The rows are stored; a lost commit only means a replay, which
		// the high-water offsets and dedup tokens absorb.
		s.log.Warn("commit failed", "err", commitErr)
	}
	return nil
}

// release returns a written group's columns for reuse.
func (s *Sink) release(g *group) {
	g.cols.reset()
	s.freeMu.Lock()
	s.free[g.key.table] = append(s.free[g.key.table], g.cols)
	s.freeMu.Unlock()
}

// insert sends one group as one block with its deduplication token.
func (s *Sink) insert(ctx context.Context, g *group) error {
	ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{
		"insert_deduplicate":         1,
		"insert_deduplication_token": g.token(),
	}))
	if s.httpConn != nil {
		buf := s.bufs.get()
		defer s.bufs.put(buf)
		if c, ok := g.cols.(*telemetryCols); ok {
			buf.Grow(c.arrowSize())
		}
		if err := encodeArrow(buf, g.cols); err != nil {
			return err
		}
		return s.httpConn.InsertFormat(ctx, "ArrowStream", g.insertQuery(), buf)
	}
	batch, err := s.conn.PrepareBatch(ctx, g.insertQuery())
	if err != nil {
		return err
	}
	for i, v := range g.cols.values() {
		if err := batch.Column(i).Append(v); err != nil {
			batch.Abort()
			return fmt.Errorf("column %s: %w", g.cols.names()[i], err)
		}
	}
	return batch.Send()
}

// retry runs fn until it succeeds or ctx is done, with exponential
// backoff between attempts.
func (s *Sink) retry(ctx context.Context, what, table string, fn func(context.Context) error) error {
	backoff := s.opts.MinBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.opts.InsertTimeout)
		err := fn(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				s.log.Info("clickhouse reachable again", "op", what, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errPartitionMoved) || errors.Is(err, errUnstorable) {
			return err
		}
		if table != "" {
			s.opts.Metrics.InsertFailed(table)
		}
		s.log.Warn("clickhouse operation failed; retrying", "op", what, "attempt", attempt, "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, s.opts.MaxBackoff)
	}
}

// bufPool keeps the Arrow stream buffers of the inserts for reuse (a
// sync.Pool drops them at every GC, and they are large); its zero value
// is ready.
type bufPool struct {
	mu   sync.Mutex
	free []*bytes.Buffer
}

func (p *bufPool) get() *bytes.Buffer {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

func (p *bufPool) put(b *bytes.Buffer) {
	p.mu.Lock()
	p.free = append(p.free, b)
	p.mu.Unlock()
}
