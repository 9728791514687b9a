package clickhouse

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
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

// write inserts every group of b (see planInserts), sends the DLQ
// records, then commits b's offsets. It returns only a context error:
// ClickHouse failures are retried.
func (s *Sink) write(ctx context.Context, b *batch) error {
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
	for _, lane := range planInserts(b.groups) {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for _, in := range lane {
				start := time.Now()
				table := in[0].key.table
				err := s.retry(ctx, "insert into "+table, table, func(ctx context.Context) error {
					for _, g := range in {
						if g.gen != s.generation() {
							return errPartitionMoved
						}
					}
					return s.insert(ctx, in...)
				})
				for _, g := range in {
					outcomes[index[g]] = outcome{err: err, took: time.Since(start), done: true}
				}
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

// insert sends groups of one table as one INSERT (one block, so one
// part: atomic) with one deduplication token.
func (s *Sink) insert(ctx context.Context, groups ...*group) error {
	ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{
		"insert_deduplicate":         1,
		"insert_deduplication_token": insertToken(groups),
	}))
	cols := make([]columns, len(groups))
	for i, g := range groups {
		cols[i] = g.cols
	}
	query := groups[0].insertQuery()
	if s.httpConn != nil {
		buf := s.bufs.get()
		defer s.bufs.put(buf)
		size := 0
		for _, c := range cols {
			if t, ok := c.(*telemetryCols); ok {
				size += t.arrowSize()
			}
		}
		buf.Grow(size)
		if err := encodeArrow(buf, cols...); err != nil {
			return err
		}
		return s.httpConn.InsertFormat(ctx, "ArrowStream", query, buf)
	}
	batch, err := s.conn.PrepareBatch(ctx, query)
	if err != nil {
		return err
	}
	for _, c := range cols {
		for i, v := range c.values() {
			if err := batch.Column(i).Append(v); err != nil {
				batch.Abort()
				return fmt.Errorf("column %s: %w", c.names()[i], err)
			}
		}
	}
	return batch.Send()
}

// insertToken is the deduplication token of an INSERT of groups: the
// group's own token for one, a hash of their tokens for several (the
// same groups always give the same token, so a retried insert is
// dropped by the server).
func insertToken(groups []*group) string {
	if len(groups) == 1 {
		return groups[0].token()
	}
	h := sha256.New()
	for _, g := range groups {
		h.Write([]byte(g.token()))
		h.Write([]byte{0})
	}
	k := groups[0].key
	return fmt.Sprintf("iotpipe/%s/%s/multi/%d/%x", k.table, k.topic, k.day, h.Sum(nil)[:16])
}

// planInserts orders groups (sorted by table, topic, partition and
// first offset) into lanes of INSERTs: a lane per table and source
// topic, its INSERTs run in order, lanes side by side. Round k of a
// lane takes the k-th group of each of its source partitions and makes
// an INSERT per day among them (a day is a table partition: one INSERT,
// one part). So each source partition's groups are stored in offset
// order (the table's highest source offset never passes rows it does
// not hold yet) while the partitions share INSERTs: one part per table
// and flush in the common case, not one per source partition, which
// the server would write and then merge again.
func planInserts(groups []*group) [][][]*group {
	var lanes [][][]*group
	for i := 0; i < len(groups); {
		j := i
		for j < len(groups) && groups[j].key.table == groups[i].key.table && groups[j].key.topic == groups[i].key.topic {
			j++
		}
		// The chains of the lane: each source partition's groups.
		var chains [][]*group
		for k := i; k < j; k++ {
			if k == i || groups[k].key.partition != groups[k-1].key.partition {
				chains = append(chains, nil)
			}
			chains[len(chains)-1] = append(chains[len(chains)-1], groups[k])
		}
		var lane [][]*group
		for round := 0; ; round++ {
			var taken []*group
			for _, c := range chains {
				if round < len(c) {
					taken = append(taken, c[round])
				}
			}
			if len(taken) == 0 {
				break
			}
			slices.SortStableFunc(taken, func(a, b *group) int { return cmp.Compare(a.key.day, b.key.day) })
			for a := 0; a < len(taken); {
				b := a
				for b < len(taken) && taken[b].key.day == taken[a].key.day {
					b++
				}
				lane = append(lane, taken[a:b:b])
				a = b
			}
		}
		lanes = append(lanes, lane)
		i = j
	}
	return lanes
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
