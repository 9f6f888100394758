package sms

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkSend measures Send against the local stand-in in discard mode,
// unpaced, at several numbers of concurrent senders.
func BenchmarkSend(b *testing.B) {
	for _, goroutines := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
			bu := setup(b, nil)
			bu.srv.SetDiscard(true)
			m := message(testTo)
			b.SetParallelism(max(1, goroutines/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := bu.sender.Send(b.Context(), m); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
