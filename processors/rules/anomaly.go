package rules

import (
	"fmt"
	"sort"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/value"
	"github.com/iotpipe/iotpipe/schemas"
)

// pewmaResult reads a pewma() result object ({mean, std, z, probability,
// anomaly, lower, upper, t}) from an output column.
func pewmaResult(v any) (m map[string]any, anomaly, ok bool) {
	m, ok = v.(map[string]any)
	if !ok || len(m) != 8 {
		return nil, false, false
	}
	for _, k := range [...]string{"mean", "std", "z", "probability", "lower", "upper"} {
		if _, ok := m[k].(float64); !ok {
			return nil, false, false
		}
	}
	a, ok := m["anomaly"].(bool)
	if !ok {
		return nil, false, false
	}
	return m, a, true
}

// anomalies emits a schemas.Anomaly record for every pewma() column of
// a stateful rule's output that flagged its point. The column name is
// the metric; the scored value is mean + z*std (pewma's result carries
// the prediction, not the point; exact whenever std > 0, which holds
// for every flagged point).
func (p *Processor) anomalies(tx *processors.Tx, ri *ruleInfo, in *rulesql.Input, out any) error {
	row, ok := out.(map[string]any)
	if !ok {
		return nil
	}
	var cols []string
	for k, v := range row {
		if _, a, ok := pewmaResult(v); ok && a {
			cols = append(cols, k)
		}
	}
	sort.Strings(cols)
	for _, col := range cols {
		m, _, _ := pewmaResult(row[col])
		f := func(k string) float64 { return m[k].(float64) }
		z := f("z")
		score := z
		if score < 0 {
			score = -score
		}
		a := schemas.Anomaly{
			Thing: in.Thing, Rule: ri.rule.Name, Metric: col,
			Value: f("mean") + z*f("std"), Mean: f("mean"), Std: f("std"), Z: z,
			Probability: f("probability"), Score: score, Lower: f("lower"), Upper: f("upper"),
			Anomaly: true, Time: in.Timestamp,
		}
		if enc, err := value.MarshalJSON(out); err == nil {
			a.Output = json.RawMessage(enc)
		}
		b, err := json.Marshal(&a)
		if err != nil {
			return fmt.Errorf("encode anomaly: %w", err)
		}
		tx.Emit(&kgo.Record{Topic: p.opts.Topics.Anomalies, Key: []byte(in.Thing), Value: b,
			Headers: []kgo.RecordHeader{{Key: HeaderRule, Value: []byte(ri.rule.Name)}}})
		if !tx.DryRun() {
			p.metrics.anomalies.WithLabelValues(ri.rule.Name).Inc()
		}
	}
	return nil
}
