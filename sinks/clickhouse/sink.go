package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
)

// errPartitionMoved stops the retries of a group whose partition was
// revoked or lost.
var errPartitionMoved = errors.New("partition moved to another consumer")

// placeCache remembers, within one poll's records (no rebalance and no
// new batch can happen in between), the high-water offset, group and
// handled map of the previous record, which the next usually shares.
type placeCache struct {
	hwKey   hwKey
	hw      int64
	ids     *idWindow
	hwOK    bool
	group   *group
	topic   string
	handled map[int32]kgo.EpochOffset
}

// hwKey names the rows of one table that came from one source partition.
type hwKey struct {
	table     string
	topic     string
	partition int32
}

// Sink copies iotpipe's topics into ClickHouse exactly once.
//
// Rows are grouped per (table, source partition, day); the groups of a
// flush of one table and day, one per source partition, are inserted as
// one block (so one part: atomic, and one part per flush rather than one
// per partition) with a deduplication token derived from the groups'
// rows' source ids (derived tables) or source offset ranges (the
// others). Offsets are committed only after
// every insert of a batch was confirmed; while ClickHouse is unreachable
// the sink retries with backoff and, one batch later, stops reading, so
// its lag grows and nothing is lost. On (re)assignment of a partition
// the sink asks each table for the highest source offset it holds and
// skips records at or below it, so a replay (a reset group, a crash
// before the commit) adds no rows even when it batches differently. A
// derived table (anomalies, aggregates, rule outputs) also keeps each
// source id (iot.src) once: the sink remembers the ids of the latest
// SourceIDWindow rows of each partition (read from the table on
// assignment) and skips a record produced again under an id it holds.
//
// One batch is written in the background while the next is read and
// decoded; batches are written and committed in order, and partitions
// move (rebalance) only between batches.
type Sink struct {
	opts     Options
	log      *slog.Logger
	conn     driver.Conn
	httpConn driver.Conn // set for InsertArrowHTTP
	cl       *kgo.Client
	dec      decoder

	pending     map[groupKey]*group
	pendingRows int
	polled      bool                                 // records polled since the last commit
	handled     map[string]map[int32]kgo.EpochOffset // next offset to commit, per partition
	dlq         []*kgo.Record
	freeMu      sync.Mutex
	free        map[string][]columns
	rowBuf      []row
	telBuf      []telemetryView // the telemetry rows of rowBuf
	scratch     []*scratch      // one per decode worker
	errBuf      []error
	bufs        bufPool // for Arrow streams
	ruleTables  ruleTables

	last placeCache // of the records of one poll

	hwMu sync.Mutex
	hw   map[hwKey]int64
	ids  map[hwKey]*idWindow // of derived tables; used by the read loop only
	seed maphash.Seed
	gen  uint64 // bumped when partitions move; pending groups of an older gen are dropped

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Start connects to ClickHouse (a broken DSN or an unreachable server is
// an error here), applies the DDL, joins the consumer group and starts
// copying in the background until Stop or ctx is done.
func Start(ctx context.Context, opts Options) (*Sink, error) {
	if opts.Kafka == nil {
		return nil, errors.New("clickhouse sink: no Kafka client factory (Options.Kafka)")
	}
	opts.setDefaults()
	conn, err := Open(ctx, opts.DSN)
	if err != nil {
		return nil, err
	}
	if err := Migrate(ctx, conn, opts.Schema); err != nil {
		conn.Close()
		return nil, err
	}
	log := opts.Logger.With("component", "clickhouse-sink")
	var httpConn driver.Conn
	if opts.Insert == InsertArrowHTTP {
		hd := opts.HTTPDSN
		if hd == "" {
			hd, err = httpDSN(opts.DSN)
		}
		if err == nil {
			httpConn, err = Open(ctx, hd)
		}
		if err != nil {
			log.Warn("no HTTP interface for Arrow inserts; inserting over the native protocol", "err", err)
		}
	}
	s := &Sink{
		httpConn:   httpConn,
		opts:       opts,
		log:        log,
		conn:       conn,
		dec:        decoder{topics: opts.Topics, maxPayload: opts.MaxPayloadBytes},
		pending:    map[groupKey]*group{},
		free:       map[string][]columns{},
		hw:         map[hwKey]int64{},
		ids:        map[hwKey]*idWindow{},
		ruleTables: ruleTables{columns: map[string]map[string]bool{}, failed: map[string]ruleTableFailure{}},
		seed:       maphash.MakeSeed(),
		handled:    map[string]map[int32]kgo.EpochOffset{},
		done:       make(chan struct{}),
	}
	resetHW := func(context.Context, *kgo.Client, map[string][]int32) {
		s.hwMu.Lock()
		clear(s.hw)
		clear(s.ids)
		s.gen++
		s.hwMu.Unlock()
	}
	kopts := []kgo.Opt{
		kgo.ConsumerGroup(opts.Group),
		kgo.ConsumeTopics(opts.Topics.Events, opts.Topics.Shadows, opts.Topics.Anomalies, opts.Topics.Aggregates, opts.Topics.Actions),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(resetHW),
		kgo.OnPartitionsRevoked(resetHW),
		kgo.OnPartitionsLost(resetHW),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64 << 20),
		// Rows wait up to FlushInterval anyway: a fetch waits for 1 MiB
		// or 250 ms instead of returning with each produce's few
		// records, which at low rates costs more than the rows.
		kgo.FetchMinBytes(1 << 20),
		kgo.FetchMaxWait(250 * time.Millisecond),
		// The processors write the derived topics in transactions: read
		// only what they committed, and see the transaction markers, so
		// the committed offsets move past them to the partitions' ends.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	}
	cl, err := opts.Kafka.Client(kopts...)
	if err != nil {
		s.closeConns()
		return nil, fmt.Errorf("clickhouse sink: kafka client: %w", err)
	}
	s.cl = cl
	runCtx, cancel := context.WithCancel(ctx)
	// Writes outlive the read loop by a grace period at stop, so a batch
	// in flight is stored and committed rather than read again.
	writeCtx, writeCancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	context.AfterFunc(runCtx, func() { time.AfterFunc(opts.FlushInterval+opts.InsertTimeout, writeCancel) })
	go func() {
		defer close(s.done)
		defer writeCancel()
		s.err = s.run(runCtx, writeCtx)
	}()
	return s, nil
}

// Stop stops reading, flushes and commits what is pending (within
// FlushInterval plus InsertTimeout), leaves the group and closes the
// connections. It returns the error that ended the sink, if any.
func (s *Sink) Stop() error {
	s.cancel()
	<-s.done
	s.cl.AllowRebalance() // nothing is pending now; leaving the group waits for this
	s.cl.Close()
	s.closeConns()
	return s.err
}

func (s *Sink) closeConns() {
	s.conn.Close()
	if s.httpConn != nil {
		s.httpConn.Close()
	}
}

// InsertMode reports how this sink inserts (InsertNative after a
// fallback).
func (s *Sink) InsertMode() InsertMode {
	if s.httpConn != nil {
		return InsertArrowHTTP
	}
	return InsertNative
}

// Done is closed when the sink stopped on its own or after Stop.
func (s *Sink) Done() <-chan struct{} { return s.done }

func (s *Sink) run(ctx, writeCtx context.Context) error {
	var (
		deadline  time.Time
		inflight  chan error // the batch being written in the background, if any
		lastAllow = time.Now()
	)
	// wait waits for the background write.
	wait := func() error {
		if inflight == nil {
			return nil
		}
		err := <-inflight
		inflight = nil
		return err
	}
	for {
		if ctx.Err() != nil {
			wait()
			return s.finalFlush()
		}
		// The background write finished: let partitions move if nothing
		// else is pending.
		if inflight != nil {
			select {
			case err := <-inflight:
				inflight = nil
				if err != nil {
					return s.stopErr(ctx, err)
				}
			default:
			}
		}
		if inflight == nil && !s.polled {
			// Partitions move only between batches, never while rows
			// of theirs wait to be inserted.
			s.cl.AllowRebalance()
			lastAllow = time.Now()
		}
		pctx, cancel := ctx, context.CancelFunc(func() {})
		switch pd := deadline; {
		case inflight != nil && (pd.IsZero() || time.Until(pd) > 50*time.Millisecond):
			// Come back soon to see the write finish and let a
			// rebalance through even if no records arrive.
			pctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
		case !pd.IsZero():
			pctx, cancel = context.WithDeadline(ctx, pd)
		}
		fetches := s.cl.PollRecords(pctx, s.opts.BatchRows-s.pendingRows)
		cancel()
		if fetches.IsClientClosed() {
			wait()
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				s.log.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		recs := fetches.Records()
		rows, errs := s.decodeAll(recs)
		s.last = placeCache{}
		for i, r := range recs {
			if err := s.add(ctx, r, rows[i], errs[i]); err != nil {
				wait()
				if ctx.Err() != nil {
					return s.finalFlush()
				}
				return err
			}
		}
		if s.polled && deadline.IsZero() {
			deadline = time.Now().Add(s.opts.FlushInterval)
		}
		if !s.polled || (s.pendingRows < s.opts.BatchRows && time.Now().Before(deadline)) {
			continue
		}
		// One batch is written at a time, in order: wait for the previous.
		if err := wait(); err != nil {
			return s.stopErr(ctx, err)
		}
		deadline = time.Time{}
		b := s.takeBatch()
		if time.Since(lastAllow) > rebalanceEvery {
			// Under steady load there is always a batch in flight or
			// pending; write this one in the foreground now and then so
			// a rebalance gets its turn.
			if err := s.write(writeCtx, b); err != nil {
				return s.stopErr(ctx, err)
			}
			continue
		}
		inflight = make(chan error, 1)
		go func(ch chan<- error) { ch <- s.write(writeCtx, b) }(inflight)
	}
}

// rebalanceEvery bounds how long a rebalance waits for a gap between
// batches under steady load.
const rebalanceEvery = 5 * time.Second

// stopErr is the run's result after a write failed: nil when the sink is
// stopping (the records were not committed and are read again).
func (s *Sink) stopErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// finalFlush flushes what is pending on stop, bounded in time.
func (s *Sink) finalFlush() error {
	if !s.polled {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.FlushInterval+s.opts.InsertTimeout)
	defer cancel()
	if err := s.flush(ctx); err != nil {
		s.log.Warn("pending rows not flushed at stop; they are read again on the next start", "err", err)
	}
	return nil
}

// decodeAll decodes recs on up to DecodeWorkers goroutines; rows[i] and
// errs[i] belong to recs[i]. The rows are valid until the next call.
func (s *Sink) decodeAll(recs []*kgo.Record) ([]row, []error) {
	n := len(recs)
	s.rowBuf = slices.Grow(s.rowBuf[:0], n)[:n]
	s.errBuf = slices.Grow(s.errBuf[:0], n)[:n]
	s.telBuf = slices.Grow(s.telBuf[:0], n)[:n]
	workers := max(1, min(s.opts.DecodeWorkers, (n+255)/256))
	for len(s.scratch) < workers {
		s.scratch = append(s.scratch, new(scratch))
	}
	decode := func(lo, hi int, sc *scratch) {
		for i := lo; i < hi; i++ {
			s.rowBuf[i], s.errBuf[i] = s.dec.decodeInto(recs[i], sc, &s.telBuf[i])
		}
	}
	if workers == 1 {
		decode(0, n, s.scratch[0])
		return s.rowBuf, s.errBuf
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for w, lo := 0, 0; lo < n; w, lo = w+1, lo+per {
		hi := min(lo+per, n)
		sc := s.scratch[w]
		wg.Go(func() { decode(lo, hi, sc) })
	}
	wg.Wait()
	return s.rowBuf, s.errBuf
}

// add puts r's decoded row (or its decode error) in its group. Once it
// returns nil, r is handled: its offset is committed by the next flush.
func (s *Sink) add(ctx context.Context, r *kgo.Record, rw row, decodeErr error) error {
	if err := s.place(ctx, r, rw, decodeErr); err != nil {
		return err
	}
	s.polled = true
	ps := s.last.handled
	if ps == nil || s.last.topic != r.Topic {
		ps = s.handled[r.Topic]
		if ps == nil {
			ps = map[int32]kgo.EpochOffset{}
			s.handled[r.Topic] = ps
		}
		s.last.topic, s.last.handled = r.Topic, ps
	}
	ps[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
	return nil
}

func (s *Sink) place(ctx context.Context, r *kgo.Record, rw row, decodeErr error) error {
	if decodeErr != nil {
		s.deadLetter(r, decodeErr)
		return nil
	}
	if rw == nil {
		return nil
	}
	if ro, ok := rw.(*ruleOutputRow); ok && ro.table.Name != ddl.RuleOutputs {
		if err := s.ensureRuleTable(ctx, ro.table); errors.Is(err, errUnstorable) {
			s.deadLetter(r, err)
			return nil
		} else if err != nil {
			return err
		}
	}
	table := rw.tableName()
	hk := hwKey{table, r.Topic, r.Partition}
	hw, ids := s.last.hw, s.last.ids
	if !s.last.hwOK || s.last.hwKey != hk {
		var err error
		_, sourced := rw.(sourcedRow)
		if hw, ids, err = s.position(ctx, hk, sourced); err != nil {
			return err
		}
		s.last.hwKey, s.last.hw, s.last.ids, s.last.hwOK = hk, hw, ids, true
	}
	if r.Offset <= hw {
		s.opts.Metrics.Skipped(table, 1)
		return nil
	}
	if ids != nil && !ids.add(rw.(sourcedRow).sourceID()) { // ids: a derived table's
		s.opts.Metrics.Skipped(table, 1)
		return nil
	}
	k := groupKey{table: table, topic: r.Topic, partition: r.Partition, day: dayOf(rw.time())}
	g := s.last.group
	if g == nil || g.key != k {
		if g = s.pending[k]; g == nil {
			g = &group{key: k, first: r.Offset, cols: s.columns(table), gen: s.generation()}
			s.pending[k] = g
		}
		s.last.group = g
	}
	g.last = r.Offset
	g.cols.add(rw)
	s.pendingRows++
	return nil
}

func (s *Sink) columns(table string) columns {
	s.freeMu.Lock()
	defer s.freeMu.Unlock()
	if f := s.free[table]; len(f) > 0 {
		c := f[len(f)-1]
		s.free[table] = f[:len(f)-1]
		return c
	}
	return newColumns(table)
}

func (s *Sink) deadLetter(r *kgo.Record, reason error) {
	s.log.Warn("record sent to the DLQ", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", reason)
	s.opts.Metrics.DeadLettered()
	s.dlq = append(s.dlq, schemas.DeadLetter(s.opts.Topics.DLQ, r, "clickhouse", reason))
}

// position returns the highest source offset table holds from the
// partition (-1 for none) and, for a derived table (sourced), the window
// of the source ids of its latest rows from it, asking ClickHouse once
// per assignment.
func (s *Sink) position(ctx context.Context, k hwKey, sourced bool) (int64, *idWindow, error) {
	s.hwMu.Lock()
	hw, ok := s.hw[k]
	ids := s.ids[k]
	s.hwMu.Unlock()
	if ok && (!sourced || ids != nil) { // a write may set hw alone after a rebalance
		return hw, ids, nil
	}
	err := s.retry(ctx, "read the position of "+k.table, k.table, func(ctx context.Context) error {
		if sourced {
			hw, ids, ok = -1, newIDWindow(s.seed, s.opts.SourceIDWindow), false
			return s.latestIDs(ctx, k, &hw, ids)
		}
		var n uint64
		var m int64
		if err := s.conn.QueryRow(ctx, "SELECT count(), max(offset) FROM `"+k.table+"` WHERE partition = ?", k.partition).Scan(&n, &m); err != nil {
			return err
		}
		hw = -1
		if n > 0 {
			hw = m
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	s.hwMu.Lock()
	s.hw[k] = hw
	if sourced {
		s.ids[k] = ids
	}
	s.hwMu.Unlock()
	return hw, ids, nil
}

// latestIDs reads the offsets and source ids of the latest rows the
// derived table holds from k's partition into hw (the highest offset)
// and ids (oldest first, so the window drops the oldest first).
func (s *Sink) latestIDs(ctx context.Context, k hwKey, hw *int64, ids *idWindow) error {
	rows, err := s.conn.Query(ctx, "SELECT offset, src FROM `"+k.table+"` WHERE partition = ? ORDER BY offset DESC LIMIT ?",
		k.partition, uint64(s.opts.SourceIDWindow))
	if err != nil {
		return err
	}
	defer rows.Close()
	var latest []string
	for rows.Next() {
		var off int64
		var src string
		if err := rows.Scan(&off, &src); err != nil {
			return err
		}
		*hw = max(*hw, off)
		latest = append(latest, src)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i := len(latest) - 1; i >= 0; i-- {
		if latest[i] != "" { // rows stored before source ids
			ids.add(latest[i])
		}
	}
	return nil
}

func hwOf(g *group) hwKey { return hwKey{g.key.table, g.key.topic, g.key.partition} }

func (s *Sink) generation() uint64 {
	s.hwMu.Lock()
	defer s.hwMu.Unlock()
	return s.gen
}

func (s *Sink) setHW(k hwKey, hw int64) {
	s.hwMu.Lock()
	s.hw[k] = hw
	s.hwMu.Unlock()
}
