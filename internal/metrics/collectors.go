package metrics

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crier-dev/crier/internal/store"
)

// ScrapeTimeout bounds the query each collector below makes at scrape time,
// so that a slow or unreachable dependency cannot hold up /metrics.
const ScrapeTimeout = 2 * time.Second

// Channels are the delivery channels always reported by the queue
// collector, with zeros when nothing is queued, so their series never
// disappear.
var Channels = []string{"email", "sms"}

// QueueStatter reads the delivery queue; *store.Store is one.
type QueueStatter interface {
	QueueStats(ctx context.Context) ([]store.QueueStat, error)
}

// QueueCollector reports the delivery queue of each channel, read from
// PostgreSQL at scrape time:
//
//	crier_queue_depth{channel}               deliveries in state queued
//	crier_queue_oldest_age_seconds{channel}  age of the oldest of them (0 when none)
//	crier_queue_stats_up                     1 when the query succeeded, else 0
//
// When the query fails only crier_queue_stats_up (0) is reported, so a
// database outage does not fail the whole scrape.
type QueueCollector struct {
	q                 QueueStatter
	depth, oldest, up *prometheus.Desc
}

// NewQueueCollector returns a collector that queries q.
func NewQueueCollector(q QueueStatter) *QueueCollector {
	return &QueueCollector{
		q: q,
		depth: prometheus.NewDesc("crier_queue_depth",
			"Deliveries waiting to be sent (state queued), by channel, read from the ledger at scrape time.", []string{"channel"}, nil),
		oldest: prometheus.NewDesc("crier_queue_oldest_age_seconds",
			"Age of the oldest queued delivery (since fan-out or a manual retry), by channel; 0 when none is queued.", []string{"channel"}, nil),
		up: prometheus.NewDesc("crier_queue_stats_up",
			"1 when the queue statistics could be read from PostgreSQL at this scrape, 0 otherwise.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.oldest
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
	defer cancel()
	stats, err := c.q.QueueStats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	byChannel := map[string]store.QueueStat{}
	for _, s := range stats {
		byChannel[s.Channel] = s
	}
	for _, name := range Channels {
		if _, ok := byChannel[name]; !ok {
			byChannel[name] = store.QueueStat{Channel: name}
		}
	}
	for name, s := range byChannel {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(s.Queued), name)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, s.OldestAge.Seconds(), name)
	}
}

// ConsumerInfoer reads a JetStream consumer's state; jetstream.Consumer is
// one.
type ConsumerInfoer interface {
	Info(ctx context.Context) (*jetstream.ConsumerInfo, error)
}

// ConsumerCollector reports the lag of crier's JetStream consumer, read from
// the server at scrape time:
//
//	crier_jetstream_consumer_pending_messages{stream,consumer}      stored, not yet delivered (num_pending)
//	crier_jetstream_consumer_ack_pending_messages{stream,consumer}  delivered, not yet acknowledged (num_ack_pending)
//	crier_jetstream_consumer_redelivered_messages{stream,consumer}  delivered more than once, not yet acknowledged
//	crier_jetstream_consumer_up                                     1 when the consumer info was read, else 0
type ConsumerCollector struct {
	c                                    ConsumerInfoer
	stream, consumer                     string
	pending, ackPending, redelivered, up *prometheus.Desc
}

// NewConsumerCollector returns a collector for the consumer c, labelled
// with its stream and consumer names.
func NewConsumerCollector(c ConsumerInfoer, stream, consumer string) *ConsumerCollector {
	labels := []string{"stream", "consumer"}
	return &ConsumerCollector{
		c: c, stream: stream, consumer: consumer,
		pending: prometheus.NewDesc("crier_jetstream_consumer_pending_messages",
			"Events in the stream not yet delivered to crier's consumer (num_pending): the fan-out lag.", labels, nil),
		ackPending: prometheus.NewDesc("crier_jetstream_consumer_ack_pending_messages",
			"Events delivered to crier's consumer and not yet acknowledged (num_ack_pending): fan-outs in progress or waiting to be redelivered.", labels, nil),
		redelivered: prometheus.NewDesc("crier_jetstream_consumer_redelivered_messages",
			"Events delivered more than once and not yet acknowledged (num_redelivered).", labels, nil),
		up: prometheus.NewDesc("crier_jetstream_consumer_up",
			"1 when the consumer's state could be read from JetStream at this scrape, 0 otherwise.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ConsumerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.redelivered
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *ConsumerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
	defer cancel()
	info, err := c.c.Info(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), c.stream, c.consumer)
	ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), c.stream, c.consumer)
	ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(info.NumRedelivered), c.stream, c.consumer)
}
