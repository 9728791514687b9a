package webhook

import "github.com/prometheus/client_golang/prometheus"

// metrics are the executor's Prometheus collectors. Targets are labelled by
// scheme://host:port, so their number is the number of distinct webhook
// hosts in the rules.
type metrics struct {
	delivered       *prometheus.CounterVec
	retried         *prometheus.CounterVec
	deadLettered    *prometheus.CounterVec
	skipped         *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	deliveryLatency *prometheus.HistogramVec
	queued          *prometheus.GaugeVec
	inFlight        prometheus.GaugeFunc
}

func newMetrics(inFlight func() float64) *metrics {
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}
	return &metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_webhook_delivered_total",
			Help: "Webhook firings delivered (a 2xx response), by target.",
		}, []string{"target"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_webhook_retries_total",
			Help: "Webhook attempts that failed and were retried, by target.",
		}, []string{"target"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_webhook_dead_lettered_total",
			Help: "Webhook firings written to the DLQ topic, by target and kind (rejected, exhausted, invalid).",
		}, []string{"target", "kind"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_webhook_skipped_total",
			Help: "Action records not delivered, by reason: other_type (not a webhook), undecodable, executed (the ledger says it is done, or its key is), duplicate (a record with its key is being delivered).",
		}, []string{"reason"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "iotpipe_webhook_request_duration_seconds",
			Help:    "Duration of one HTTP attempt, by target.",
			Buckets: buckets,
		}, []string{"target"}),
		deliveryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "iotpipe_webhook_delivery_latency_seconds",
			Help:    "Time from a firing being read from the log to its delivery, retries and queueing included, by target.",
			Buckets: buckets,
		}, []string{"target"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "iotpipe_webhook_queued_records",
			Help: "Firings queued for a target or waiting for their next attempt, by target.",
		}, []string{"target"}),
		inFlight: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "iotpipe_webhook_in_flight_records",
			Help: "Action records read but not yet acknowledged (delivered, dead-lettered or skipped).",
		}, inFlight),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.delivered, m.retried, m.deadLettered, m.skipped,
		m.requestDuration, m.deliveryLatency, m.queued, m.inFlight}
}
