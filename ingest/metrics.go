package ingest

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	logged         prometheus.Counter
	produceErrors  prometheus.Counter
	produceLatency prometheus.Histogram
	pubackLatency  prometheus.Histogram
	ackTimeouts    prometheus.Counter
	expired        prometheus.Counter
	refused        *prometheus.CounterVec
	lifecycle      *prometheus.CounterVec
	delivered      prometheus.Counter
	commands       *prometheus.CounterVec
	httpPublished  prometheus.Counter
	authRefused    *prometheus.CounterVec
	authenticated  *prometheus.CounterVec
	handshake      prometheus.Histogram
	sessionsEnded  *prometheus.CounterVec
	authorizer     *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		logged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_ingest_logged_total", Help: "Device publishes acknowledged by the log.",
		}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_ingest_produce_errors_total", Help: "Device publishes the log failed to accept (not acknowledged to the device).",
		}),
		produceLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "iotpipe_ingest_produce_seconds", Help: "Time from receiving a publish to the log's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		pubackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "iotpipe_ingest_puback_seconds", Help: "Time from receiving a QoS 1 publish to writing its PUBACK (after the log's acknowledgement): iotpipe_ingest_produce_seconds plus the wait for the connection's writer.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		ackTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_ingest_ack_timeouts_total", Help: "Device publishes answered as failed because the log did not answer within the ack timeout.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_ingest_expired_total", Help: "Logged publishes not routed: their MQTT 5 message expiry passed before the log acknowledged them.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_ingest_refused_total", Help: "Publishes or connections refused, by reason.",
		}, []string{"reason"}),
		lifecycle: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_ingest_lifecycle_total", Help: "Lifecycle events written to the log, by type.",
		}, []string{"type"}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_ingest_outbound_delivered_total", Help: "Outbound messages handed to MQTT routing.",
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_ingest_commands_total", Help: "Commands of the outbound topic routed by this node, by outcome (delivered, queued, no_subscriber).",
		}, []string{"outcome"}),
		httpPublished: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_ingest_http_published_total", Help: "HTTP publishes acknowledged by the log.",
		}),
		authRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_ingest_auth_refused_total", Help: "MQTT connections refused at authentication (or their TLS handshake), by reason.",
		}, []string{"reason"}),
		authenticated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_ingest_authenticated_total", Help: "MQTT connections authenticated, by method (certificate, token, authorizer, anonymous).",
		}, []string{"method"}),
		handshake: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "iotpipe_ingest_tls_handshake_seconds", Help: "Time of the MQTT listeners' successful TLS handshakes.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		sessionsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_ingest_sessions_ended_total", Help: "Live MQTT sessions the server ended because their credentials stopped being valid, by reason (revoked, deactivated or deleted certificate, revoked token, deleted thing, custom authorizer).",
		}, []string{"reason"}),
		authorizer: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_ingest_authorizer_requests_total", Help: "Custom authorizer decisions, by result (allow, deny, error; cached: answered from the cache).",
		}, []string{"result"}),
	}
}

// Collectors returns the server's Prometheus collectors for registration.
func (s *Server) Collectors() []prometheus.Collector {
	m := s.metrics
	return append([]prometheus.Collector{m.logged, m.produceErrors, m.produceLatency, m.pubackLatency, m.ackTimeouts, m.expired, m.refused, m.lifecycle, m.delivered, m.commands, m.httpPublished,
		m.authRefused, m.authenticated, m.handshake, m.sessionsEnded, m.authorizer},
		s.connCollectors()...)
}
