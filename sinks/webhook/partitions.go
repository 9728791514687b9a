package webhook

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The partitions an executor owns: loaded from the ledger when assigned,
// written to it every CommitInterval and when they go.

// assign loads the ledger of each assigned partition and resumes it at
// the ledger's offset (at the group's when the ledger has none yet).
func (e *Executor) assign(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	ps := offsets[e.opts.Topics.Actions]
	for p := range ps {
		lp, err := e.ledger.Load(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("webhook executor: load the ledger of %s/%d: %w", e.opts.Topics.Actions, p, err)
		}
		next, ok := lp.Resume()
		if ok {
			ps[p] = kgo.NewOffset().At(next).WithEpoch(-1)
		}
		e.mu.Lock()
		if old := e.parts[p]; old != nil {
			old.revoked = true
			old.cancel()
		}
		pctx, cancel := context.WithCancel(e.attemptCtx)
		e.parts[p] = &part{id: p, l: lp, ctx: pctx, cancel: cancel}
		e.mu.Unlock()
		e.log.Info("partition assigned", "partition", p, "resume_at", next, "from_ledger", ok)
	}
	return offsets, nil
}

// sweepInterval is how often idle targets are forgotten.
const sweepInterval = time.Minute

// commitLoop writes the ledger and commits every CommitInterval, and
// sweeps idle targets every sweepInterval.
func (e *Executor) commitLoop(ctx context.Context) {
	t := time.NewTicker(e.opts.CommitInterval)
	defer t.Stop()
	swept := time.Now()
	for {
		select {
		case now := <-t.C:
			if err := e.commit(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("ledger write or commit failed; retrying at the next interval", "err", err)
			}
			if now.Sub(swept) >= sweepInterval {
				swept = now
				e.mu.Lock()
				e.sweep()
				e.mu.Unlock()
			}
		case <-ctx.Done():
			return
		}
	}
}

// commit writes the ledger records of the partitions that changed, then
// commits their resume offsets as the group's offsets (informational: lag
// tools read them; a partition resumes at its ledger's offset).
func (e *Executor) commit(ctx context.Context) error {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	marks, err := e.ledger.Flush(ctx)
	if err != nil {
		return err
	}
	if len(marks) == 0 {
		return nil
	}
	offs := map[string]map[int32]kgo.EpochOffset{e.opts.Topics.Actions: {}}
	for p, next := range marks {
		offs[e.opts.Topics.Actions][p] = kgo.EpochOffset{Epoch: -1, Offset: next}
	}
	var rerr error
	e.cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			rerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					rerr = fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, perr)
				}
			}
		}
	})
	return rerr
}

// onRevoked gives up revoked partitions, keeping what they did.
func (e *Executor) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	e.release(revoked[e.opts.Topics.Actions], true)
}

// onLost gives up partitions lost without a chance to write their ledger
// (another member may own them already).
func (e *Executor) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	e.release(lost[e.opts.Topics.Actions], false)
}

// release gives up partitions: nothing new starts for them and their
// queued firings are dropped. With keep (revoked, not lost), requests in
// flight get DrainTimeout to finish and what is done is written to the
// ledger before the partitions go; requests still in flight are cut.
func (e *Executor) release(ps []int32, keep bool) {
	keep = keep && !e.killed.Load()
	e.mu.Lock()
	var gone []*part
	for _, p := range ps {
		if pt := e.parts[p]; pt != nil {
			pt.revoked = true
			delete(e.parts, p)
			gone = append(gone, pt)
		}
	}
	e.purge(func(j *job) bool { return j.part.revoked })
	e.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	if !keep {
		// Never written again: another member may own them already.
		e.ledger.Drop(ps...)
	}
	idle := func() bool {
		for _, pt := range gone {
			if pt.busy > 0 {
				return false
			}
		}
		return true
	}
	if keep {
		ctx, cancel := context.WithTimeout(context.Background(), e.opts.DrainTimeout)
		if !e.waitFor(ctx, idle) {
			e.log.Warn("requests in flight cut as their partitions were revoked; the next owner sends them again", "partitions", ps)
		}
		cancel()
	}
	for _, pt := range gone {
		pt.cancel()
	}
	e.waitFor(context.Background(), idle)
	if keep {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := e.commit(ctx); err != nil {
			e.log.Warn("ledger write on revoke failed; the next owner sends again what was done since the last write", "partitions", ps, "err", err)
		}
		cancel()
	}
	e.ledger.Drop(ps...)
}
