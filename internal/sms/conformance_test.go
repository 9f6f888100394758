package sms_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/deliver/sendertest"
	"github.com/crier-dev/crier/internal/sms"
	"github.com/crier-dev/crier/internal/testkit/twiliotest"
)

func TestSenderConformance(t *testing.T) {
	sendertest.Run(t, func(t *testing.T) sendertest.Harness {
		var mu sync.Mutex
		refused, throttled := map[string]bool{}, map[string]bool{}
		tw := twiliotest.New(t, twiliotest.ExampleAccountSID, twiliotest.ExampleAuthToken)
		tw.SetHook(func(to string, _ int) *twiliotest.Fault {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case refused[to]:
				return twiliotest.InvalidNumber()
			case throttled[to]:
				return twiliotest.RateLimited(time.Second)
			}
			return nil
		})
		s, err := sms.New(sms.Config{AccountSID: tw.AccountSID(), AuthToken: tw.AuthToken(), From: "+447400999999",
			APIURL: tw.URL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		num := func(i int) string { return fmt.Sprintf("+4474001%05d", i) }
		return sendertest.Harness{
			Sender: s,
			Message: func(i int) deliver.Message {
				return deliver.Message{DeliveryID: int64(i + 1), Channel: deliver.ChannelSMS, To: num(i),
					Text: "Investigating: Atlas Sync. Reply STOP to stop texts.", StatusCallback: "https://status.crier.example/webhooks/twilio/status"}
			},
			Received: func() int { return len(tw.Messages()) },
			Refuse:   func(i int) { mu.Lock(); refused[num(i)] = true; mu.Unlock() },
			Throttle: func(i int) { mu.Lock(); throttled[num(i)] = true; mu.Unlock() },
			Down: func(down bool) {
				if down {
					tw.SetDown(twiliotest.DownHangUp)
				} else {
					tw.SetDown(twiliotest.Up)
				}
			},
		}
	})
}
