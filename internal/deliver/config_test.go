package deliver

import (
	"testing"
	"time"
)

// TestPacedConfigKeepsLeases: with a rate limit, everything a worker can
// hold claimed and unsent (its claimer's batch, a batch queued for the
// senders, one delivery per sender) goes out within half the lease, and no
// sender waits for the limiter longer than half the send timeout, whatever
// the rate and lease.
func TestPacedConfigKeepsLeases(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{0.1, 0.5, 1, 10, 100, 1000} {
		for _, lease := range []time.Duration{4 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute} {
			c := Config{Channel: ChannelSMS, Concurrency: 32, RatePerSecond: rate, Lease: lease}.WithDefaults()
			held := c.Claimers*c.BatchSize + c.BatchSize + c.Concurrency
			wait := time.Duration(float64(held) / rate * float64(time.Second))
			senderWait := time.Duration(float64(c.Concurrency) / rate * float64(time.Second))
			if c.BatchSize < 1 || c.Concurrency < 1 {
				t.Errorf("rate %v, lease %s: batch %d, concurrency %d", rate, lease, c.BatchSize, c.Concurrency)
			}
			// One of each is always allowed, however slow the rate.
			if held > 3 && wait > lease/2 {
				t.Errorf("rate %v, lease %s: %d deliveries held (batch %d, concurrency %d, claimers %d) wait %s, more than half the lease",
					rate, lease, held, c.BatchSize, c.Concurrency, c.Claimers, wait)
			}
			if c.Concurrency > 1 && senderWait > c.SendTimeout/2 {
				t.Errorf("rate %v, lease %s: %d senders wait up to %s for the limiter, more than half of SendTimeout %s",
					rate, lease, c.Concurrency, senderWait, c.SendTimeout)
			}
		}
	}
	// Unpaced channels keep their sizes.
	if c := (Config{Channel: ChannelEmail, Concurrency: 16}).WithDefaults(); c.BatchSize != 200 || c.Concurrency != 16 || c.Claimers != 2 {
		t.Errorf("unpaced: %+v", c)
	}
}
