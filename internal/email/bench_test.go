package email_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/email"
	"github.com/crier-dev/crier/internal/testkit/smtptest"
)

// BenchmarkSend sends b.N messages through the pool to a local discarding
// SMTP server, from more goroutines than connections, and reports emails/s
// and the connections used. allocs/op counts the whole process, the
// in-process go-smtp sink included. Run 20,000 messages with
//
//	go test -run '^$' -bench BenchmarkSend -benchtime 20000x ./internal/email/
func BenchmarkSend(b *testing.B) {
	for _, pool := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("pool=%d", pool), func(b *testing.B) {
			srv, s := setup(b, func(c *email.Config) { c.PoolSize = pool }, smtptest.WithDiscard())
			msgs := make([]deliver.Message, 1024)
			for i := range msgs {
				msgs[i] = message(int64(i), fmt.Sprintf("manager%d@carehome.example", i))
			}
			// At least two goroutines per connection, so none waits idle.
			b.SetParallelism(max(1, 2*pool/runtime.GOMAXPROCS(0)))
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					i := next.Add(1)
					if _, err := s.Send(ctx, msgs[i%int64(len(msgs))]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			st := srv.Stats()
			if st.Messages != b.N {
				b.Fatalf("%d messages arrived, want %d", st.Messages, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "emails/s")
			b.ReportMetric(float64(st.Connections), "conns")
		})
	}
}
