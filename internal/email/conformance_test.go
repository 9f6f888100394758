package email_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/deliver/sendertest"
	"github.com/crier-dev/crier/internal/email"
	"github.com/crier-dev/crier/internal/testkit/smtptest"
)

func TestSenderConformance(t *testing.T) {
	for name, mode := range modes {
		t.Run(name, func(t *testing.T) { conformance(t, mode) })
	}
}

func conformance(t *testing.T, mode func(*email.Config)) {
	sendertest.Run(t, func(t *testing.T) sendertest.Harness {
		var mu sync.Mutex
		refused, throttled := map[string]bool{}, map[string]bool{}
		srv := smtptest.New(t, smtptest.WithRcptHook(func(rcpt string, _ int) *smtp.SMTPError {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case refused[rcpt]:
				return smtptest.ReplyError(550, "5.1.1 no such user")
			case throttled[rcpt]:
				return smtptest.ReplyError(451, "4.7.1 slow down")
			}
			return nil
		}))
		settings, err := email.ParseURL(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		cfg := email.Config{Settings: settings, From: "Status <status@crier.example>", PoolSize: 4}
		mode(&cfg)
		s, err := email.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		addr := func(i int) string { return fmt.Sprintf("manager%d@care.example", i) }
		return sendertest.Harness{
			Sender: s,
			Message: func(i int) deliver.Message {
				return deliver.Message{
					DeliveryID: int64(i + 1), Channel: deliver.ChannelEmail, To: addr(i),
					Subject: "[Investigating] Atlas Sync", Text: "text", HTML: "<p>html</p>",
					MessageID: fmt.Sprintf("crier.%d.abc@crier.example", i+1),
				}
			},
			Received: func() int { return len(srv.Messages()) },
			Refuse:   func(i int) { mu.Lock(); refused[addr(i)] = true; mu.Unlock() },
			Throttle: func(i int) { mu.Lock(); throttled[addr(i)] = true; mu.Unlock() },
			Down:     srv.SetDown,
		}
	})
}
