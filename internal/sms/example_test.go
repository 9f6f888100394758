package sms_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/sms"
)

func ExampleSender_Send() {
	s, err := sms.New(sms.Config{
		AccountSID: "AC0123456789abcdef0123456789abcdef",
		AuthToken:  "fedcba9876543210fedcba9876543210",
		From:       "+12015550123",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	sid, err := s.Send(context.Background(), deliver.Message{
		To:             "+447400123456",
		Text:           "Atlas Sync: Sync Pod A degraded, use Sync Pod B.",
		StatusCallback: "https://status.example.com/webhooks/twilio/status",
	})
	var perm *deliver.PermanentError
	switch {
	case errors.As(err, &perm) && perm.OptOut:
		fmt.Println("recipient opted out")
	case err != nil:
		fmt.Println("failed:", err)
	default:
		fmt.Println("sent", sid)
	}
}

func ExampleVerifySignature() {
	// Twilio's published example.
	form := url.Values{
		"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+14158675309"}, "Digits": {"1234"},
		"From": {"+14158675309"}, "To": {"+18005551212"},
		"Reason": {"Participant"}, "ReasonConferenceEnded": {"test"},
	}
	ok := sms.VerifySignature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", form, "vOEb5UThFn24KEfnOFLQY2AE5FY=")
	fmt.Println(ok)
	// Output: true
}
