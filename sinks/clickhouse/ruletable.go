package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
)

// ruleTables remembers which rule tables (clickhouse(table => ...)) and
// columns exist, or why one cannot be written, so a table is created
// and checked once (one that cannot be written, once a minute: the
// operator may fix it); used by the read loop only.
type ruleTables struct {
	columns map[string]map[string]bool  // table → columns known to exist
	failed  map[string]ruleTableFailure // table → why it cannot be written
}

type ruleTableFailure struct {
	err error
	at  time.Time
}

// ruleTableRetry is how long a rule table that cannot be written is
// not asked again.
const ruleTableRetry = time.Minute

// ensure creates t (a rule's own table) and its typed columns if they
// are missing, and checks that it has the columns the sink writes. An
// error wrapping errUnstorable means t cannot be written (the server
// refused the DDL, or a table of that name has other columns): the
// firing goes to the DLQ. Other errors are the context's.
func (s *Sink) ensureRuleTable(ctx context.Context, t ddl.RuleTable) error {
	rt := &s.ruleTables
	if f, ok := rt.failed[t.Name]; ok && time.Since(f.at) < ruleTableRetry {
		return f.err
	}
	have := rt.columns[t.Name]
	if have != nil && !slices.ContainsFunc(t.Columns, func(c ddl.RuleColumn) bool { return !have[c.Name] }) {
		return nil
	}
	err := s.retry(ctx, "create rule table "+t.Name, t.Name, func(ctx context.Context) error {
		for _, stmt := range t.Statements() {
			if err := s.conn.Exec(ctx, stmt); err != nil {
				return refused(fmt.Errorf("%s: %w", stmt, err))
			}
		}
		rows, err := s.conn.Query(ctx, "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ?", t.Name)
		if err != nil {
			return refused(err)
		}
		defer rows.Close()
		have = map[string]bool{}
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				return err
			}
			have[name] = true
		}
		return rows.Err()
	})
	if err == nil {
		var missing []string
		for _, c := range append(ddl.RuleOutputColumns(), columnNames(t.Columns)...) {
			if !have[c] {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			err = unstorable("table %s exists without the columns %v that iotpipe writes; name another table", t.Name, missing)
		}
	}
	switch {
	case errors.Is(err, errUnstorable):
		rt.failed[t.Name] = ruleTableFailure{err, time.Now()}
		s.log.Warn("rule table cannot be written; its firings go to the DLQ", "table", t.Name, "err", err)
	case err == nil:
		delete(rt.failed, t.Name)
		rt.columns[t.Name] = have
	}
	return err
}

// refused marks an error the server answered with (an exception) as
// unstorable: retrying does not change the answer. Others (the server
// unreachable) are retried.
func refused(err error) error {
	var ex *ch.Exception
	if errors.As(err, &ex) {
		return fmt.Errorf("%w: %w", errUnstorable, err)
	}
	return err
}

func columnNames(cs []ddl.RuleColumn) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}
