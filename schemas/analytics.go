package schemas

// Anomaly is a record of the anomalies topic (JSON value, key = thing):
// one PEWMA-scored point a rule flagged (or, with a rule that selects
// every point, every scored point; Anomaly tells which).
type Anomaly struct {
	Thing string `json:"thing"`
	Rule  string `json:"rule"`
	// Metric names the scored field (the pewma() argument, or its alias).
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	// Mean and Std are the prediction the point was scored against.
	Mean        float64 `json:"mean"`
	Std         float64 `json:"std"`
	Z           float64 `json:"z"`
	Probability float64 `json:"probability"`
	// Score is |Z|.
	Score   float64 `json:"score"`
	Lower   float64 `json:"lower"`
	Upper   float64 `json:"upper"`
	Anomaly bool    `json:"anomaly"`
	// Time is the event time in Unix milliseconds.
	Time int64 `json:"time"`
	// Output is the rule's output row.
	Output any `json:"output,omitempty"`
}

// Aggregate is a record of the aggregates topic (JSON value, key = thing
// or group key): one closed (or, with late updates, revised) window.
type Aggregate struct {
	Thing string `json:"thing"`
	Rule  string `json:"rule"`
	// Key is the window's group key (the GROUP BY keys after the window,
	// joined), empty when the rule groups by the window only.
	Key string `json:"key,omitempty"`
	// WindowStart and WindowEnd bound the window, Unix milliseconds,
	// [start, end).
	WindowStart int64 `json:"window_start"`
	WindowEnd   int64 `json:"window_end"`
	// Values are the aggregates by output column name.
	Values map[string]float64 `json:"values"`
	Count  int64              `json:"count"`
	// Revision is 0 for the first result of a window and counts late
	// updates after it.
	Revision int `json:"revision,omitempty"`
	// Output is the rule's output row built from the aggregates.
	Output any `json:"output,omitempty"`
}
