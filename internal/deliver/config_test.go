package deliver

import (
	"math"
	"testing"
)

// TestPacedConfigHoldsOneSecond: with a rate, a worker claims at most one
// second's worth at a time (the bucket's burst), so what it holds claimed and
// unsent never keeps a later, more urgent delivery waiting longer than that,
// whatever the rate.
func TestPacedConfigHoldsOneSecond(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{0.1, 0.5, 1, 10, 100, 1000} {
		c := Config{Channel: ChannelSMS, Concurrency: 32, RatePerSecond: rate}.WithDefaults()
		held := c.Claimers * c.BatchSize
		if c.BatchSize < 1 || c.Claimers != 1 {
			t.Errorf("rate %v: batch %d, claimers %d", rate, c.BatchSize, c.Claimers)
		}
		if want := max(1, int(math.Ceil(rate))); held > want && held > DefaultBatchSize {
			t.Errorf("rate %v: %d deliveries held, more than one second's worth (%d)", rate, held, want)
		}
	}
	// Unpaced channels keep their sizes.
	if c := (Config{Channel: ChannelEmail, Concurrency: 16}).WithDefaults(); c.BatchSize != 200 || c.Concurrency != 16 || c.Claimers != 2 {
		t.Errorf("unpaced: %+v", c)
	}
}
