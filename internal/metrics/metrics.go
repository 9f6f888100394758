// Package metrics defines crier's Prometheus metrics in one place so their
// names and labels stay consistent. Every label has a bounded set of values.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds crier's collectors.
type Metrics struct {
	Registry *prometheus.Registry

	EventsReceived   *prometheus.CounterVec   // source
	EventsRejected   *prometheus.CounterVec   // field
	EventsFannedOut  prometheus.Counter       //
	EventsDuplicate  prometheus.Counter       //
	FanoutDuration   prometheus.Histogram     //
	DeliveriesQueued *prometheus.CounterVec   // channel, state
	Deliveries       *prometheus.CounterVec   // channel, outcome
	SendDuration     *prometheus.HistogramVec // channel
	ProviderErrors   *prometheus.CounterVec   // channel, code
	ChannelUp        *prometheus.GaugeVec     // channel
}

// New creates the collectors and registers them, with the Go and process
// collectors, on a new registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		EventsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crier_events_received_total",
			Help: "Events received, by source (stream, http, alertmanager, grafana).",
		}, []string{"source"}),
		EventsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crier_events_rejected_total",
			Help: "Events refused by validation, by the field at fault (payload when the whole payload is bad).",
		}, []string{"field"}),
		EventsFannedOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crier_events_fanned_out_total",
			Help: "Events stored and fanned out into the delivery ledger.",
		}),
		EventsDuplicate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crier_events_duplicate_total",
			Help: "Events received again after they were stored (dropped by id).",
		}),
		FanoutDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "crier_fanout_duration_seconds",
			Help:    "Time to store and fan out one event.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		DeliveriesQueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crier_deliveries_created_total",
			Help: "Deliveries created by fan-out, by channel and initial state (queued, superseded).",
		}, []string{"channel", "state"}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crier_deliveries_total",
			Help: "Delivery attempts by channel and outcome (sent, retry, failed, expired, released).",
		}, []string{"channel", "outcome"}),
		SendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crier_send_duration_seconds",
			Help:    "Time for one provider send, by channel.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14),
		}, []string{"channel"}),
		ProviderErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crier_provider_errors_total",
			Help: "Provider errors by channel and provider code (SMTP reply code, Twilio error code, or network).",
		}, []string{"channel", "code"}),
		ChannelUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crier_channel_up",
			Help: "1 while the channel sends, 0 while it is paused by a fault of crier's configuration or provider account.",
		}, []string{"channel"}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.EventsReceived, m.EventsRejected, m.EventsFannedOut, m.EventsDuplicate, m.FanoutDuration,
		m.DeliveriesQueued, m.Deliveries, m.SendDuration, m.ProviderErrors, m.ChannelUp,
	)
	return m
}
