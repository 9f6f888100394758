package email

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/deliver"
)

// batchOf returns messages to the given local parts at care.example.
func batchOf(locals ...string) []deliver.Message {
	ms := make([]deliver.Message, len(locals))
	for i, l := range locals {
		m := scriptedMessage()
		m.DeliveryID = int64(i + 1)
		m.To = l + "@care.example"
		m.MessageID = fmt.Sprintf("d%d@crier.example", i+1)
		ms[i] = m
	}
	return ms
}

// groupReplies answers every transaction of a pipelined group with the
// replies reply gives for its recipient's local part.
func groupReplies(in string, reply func(local string) string) string {
	var out strings.Builder
	for _, tx := range strings.Split(in, "MAIL FROM:")[1:] {
		_, rest, _ := strings.Cut(tx, "RCPT TO:<")
		local, _, _ := strings.Cut(rest, "@")
		out.WriteString(reply(local))
	}
	return out.String()
}

const accepted = "250 ok\r\n250 ok\r\n250 queued\r\n"

func TestBatchGoesOutInOneWriteAndARefusalFailsOnlyItself(t *testing.T) {
	url, reads := scriptedServer(t, []string{"PIPELINING", "CHUNKING", "8BITMIME"}, func(in string) string {
		switch {
		case strings.HasPrefix(in, "MAIL"):
			return groupReplies(in, func(local string) string {
				if local == "gone" {
					return "250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n"
				}
				return accepted
			})
		case in == "RSET\r\n":
			return "250 reset\r\n"
		}
		return "500 unexpected\r\n"
	})
	s := scriptedSender(t, url)
	ms := batchOf("a", "gone", "c", "d")
	res := s.SendBatch(context.Background(), ms)
	for i, r := range res {
		if i == 1 {
			var pe *deliver.PermanentError
			if !errors.As(r.Err, &pe) || pe.Code != "550" {
				t.Errorf("refused recipient: %v, want a permanent 550", r.Err)
			}
			continue
		}
		if r.Err != nil || r.ProviderID != ms[i].MessageID {
			t.Errorf("message %d: %q, %v; want accepted as %s", i, r.ProviderID, r.Err, ms[i].MessageID)
		}
	}
	// The connection carries the next batch after RSET.
	for _, r := range s.SendBatch(context.Background(), batchOf("e", "f")) {
		if r.Err != nil {
			t.Errorf("next batch: %v", r.Err)
		}
	}
	got := reads()
	if len(got) != 3 || strings.Count(got[0], "MAIL FROM:") != 4 || got[1] != "RSET\r\n" || strings.Count(got[2], "MAIL FROM:") != 2 {
		t.Fatalf("server reads %q, want the batch of 4 in one write, RSET, the batch of 2", got)
	}
	if strings.Count(got[0], " LAST\r\n") != 4 {
		t.Errorf("group %q: want 4 BDAT LAST", got[0])
	}
}

// After a failed transaction the session's state is not known (RFC 3030):
// a refusal of a later transaction of the same group may be a consequence,
// so it is transient; an acceptance counts.
func TestBatchRefusalAfterAFailureIsTransient(t *testing.T) {
	url, _ := scriptedServer(t, []string{"PIPELINING", "CHUNKING"}, func(in string) string {
		switch {
		case strings.HasPrefix(in, "MAIL"):
			return groupReplies(in, func(local string) string {
				switch local {
				case "full":
					return "250 ok\r\n250 ok\r\n552 5.3.4 message too big\r\n"
				case "confused":
					return "503 5.5.1 nested MAIL\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n"
				}
				return accepted
			})
		case in == "RSET\r\n":
			return "250 reset\r\n"
		}
		return "500 unexpected\r\n"
	})
	s := scriptedSender(t, url)
	res := s.SendBatch(context.Background(), batchOf("a", "full", "confused", "d"))
	if res[0].Err != nil || res[3].Err != nil {
		t.Errorf("accepted messages failed: %v, %v", res[0].Err, res[3].Err)
	}
	var pe *deliver.PermanentError
	if !errors.As(res[1].Err, &pe) || pe.Code != "552" {
		t.Errorf("first refusal: %v, want a permanent 552", res[1].Err)
	}
	var te *deliver.TransientError
	if !errors.As(res[2].Err, &te) || te.Code != "503" || deliver.IsPermanent(res[2].Err) {
		t.Errorf("refusal after a failure: %v, want a transient 503", res[2].Err)
	}
}

// A connection that breaks in the middle of the replies: what was accepted
// is sent, the rest is transient, and the next batch uses a new connection.
func TestBatchConnectionBrokenMidGroup(t *testing.T) {
	url, reads := scriptedServer(t, []string{"PIPELINING", "CHUNKING"}, func(in string) string {
		if strings.HasPrefix(in, "MAIL") {
			return accepted + "250 ok\r\n" + hangUp
		}
		return "500 unexpected\r\n"
	})
	s := scriptedSender(t, url)
	res := s.SendBatch(context.Background(), batchOf("a", "b", "c"))
	if res[0].Err != nil {
		t.Errorf("first message: %v, want accepted", res[0].Err)
	}
	for _, r := range res[1:] {
		var te *deliver.TransientError
		if !errors.As(r.Err, &te) {
			t.Errorf("message after the break: %v, want transient", r.Err)
		}
	}
	if got := reads(); len(got) != 1 {
		t.Errorf("server reads %q, want the one group", got)
	}
	s.mu.Lock()
	n := len(s.idle)
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("%d idle connections after a broken group, want 0", n)
	}
}
