package sms

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
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

// BenchmarkRateLimit5PerSecond sends 50 texts from 8 workers sharing one
// Sender paced at 5 a second and reports the seconds it took: about 9.8
// (the first text goes at once, the other 49 at 200 ms intervals). Run with
// -benchtime=1x; each iteration takes about ten seconds.
func BenchmarkRateLimit5PerSecond(b *testing.B) {
	const texts, workers = 50, 8
	bu := setup(b, nil)
	bu.srv.SetDiscard(true)
	m := message(testTo)
	var total time.Duration
	for b.Loop() {
		s, err := New(Config{
			AccountSID: bu.cfg.AccountSID, AuthToken: bu.cfg.AuthToken, From: testFrom,
			APIURL: bu.srv.URL(), RatePerSecond: 5,
		})
		if err != nil {
			b.Fatal(err)
		}
		work := make(chan struct{}, texts)
		for range texts {
			work <- struct{}{}
		}
		close(work)
		start := time.Now()
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range work {
					if _, err := s.Send(b.Context(), m); err != nil {
						b.Error(err)
					}
				}
			})
		}
		wg.Wait()
		total += time.Since(start)
		_ = s.Close()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/50texts")
	b.ReportMetric(float64(texts*b.N)/total.Seconds(), "texts/s")
}
