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
// replies reply gives for its recipient's local part, and the RSET that
// ends it with 250 (or what rset gives, when not nil).
func groupReplies(in string, reply func(local string) string, rset func(local string) string) string {
	var out strings.Builder
	for _, tx := range strings.Split(in, "MAIL FROM:")[1:] {
		_, rest, _ := strings.Cut(tx, "RCPT TO:<")
		local, _, _ := strings.Cut(rest, "@")
		out.WriteString(reply(local))
		if !strings.HasSuffix(tx, "\r\nRSET\r\n") {
			out.WriteString("500 no RSET after the transaction\r\n")
			continue
		}
		if rset != nil {
			out.WriteString(rset(local))
		} else {
			out.WriteString("250 reset\r\n")
		}
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
			}, nil)
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
	if len(got) != 2 || strings.Count(got[0], "MAIL FROM:") != 4 || strings.Count(got[1], "MAIL FROM:") != 2 {
		t.Fatalf("server reads %q, want the batch of 4 in one write, then the batch of 2", got)
	}
	if strings.Count(got[0], " LAST\r\n") != 4 || strings.Count(got[0], "RSET\r\n") != 4 {
		t.Errorf("group %q: want 4 BDAT LAST, each followed by RSET", got[0])
	}
}

// Each transaction of a group ends with RSET, so each is judged by its own
// replies: a refusal behind another refusal in the same group is what its
// own reply code says, and an acceptance counts.
func TestBatchEachTransactionIsJudgedByItsOwnReplies(t *testing.T) {
	url, reads := scriptedServer(t, []string{"PIPELINING", "CHUNKING"}, func(in string) string {
		if !strings.HasPrefix(in, "MAIL") {
			return "500 unexpected\r\n"
		}
		return groupReplies(in, func(local string) string {
			switch local {
			case "full":
				return "250 ok\r\n250 ok\r\n552 5.3.4 message too big\r\n"
			case "gone":
				return "250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n"
			case "busy":
				return "250 ok\r\n450 4.2.0 mailbox busy\r\n554 5.5.1 no valid recipients\r\n"
			}
			return accepted
		}, nil)
	})
	s := scriptedSender(t, url)
	res := s.SendBatch(context.Background(), batchOf("full", "gone", "busy", "gone"))
	for i, want := range []struct {
		code      string
		permanent bool
	}{{"552", true}, {"550", true}, {"450", false}, {"550", true}} {
		var pe *deliver.PermanentError
		var te *deliver.TransientError
		switch {
		case want.permanent && (!errors.As(res[i].Err, &pe) || pe.Code != want.code):
			t.Errorf("message %d: %v, want a permanent %s", i, res[i].Err, want.code)
		case !want.permanent && (!errors.As(res[i].Err, &te) || te.Code != want.code || deliver.IsPermanent(res[i].Err)):
			t.Errorf("message %d: %v, want a transient %s", i, res[i].Err, want.code)
		}
	}
	// Every refusal was cleared by its RSET: the connection is reused.
	if r := s.SendBatch(context.Background(), batchOf("a", "b")); r[0].Err != nil || r[1].Err != nil {
		t.Fatalf("next batch: %v, %v", r[0].Err, r[1].Err)
	}
	if got := reads(); len(got) != 2 {
		t.Errorf("server reads %d writes on one connection, want 2 groups: %q", len(got), got)
	}
}

// A refused RSET leaves the session's state unknown: a refusal after it may
// be a consequence, so it is transient, an acceptance still counts, and the
// connection is not reused.
func TestBatchRefusedResetMakesLaterRefusalsTransient(t *testing.T) {
	url, reads := scriptedServer(t, []string{"PIPELINING", "CHUNKING"}, func(in string) string {
		if !strings.HasPrefix(in, "MAIL") {
			return "500 unexpected\r\n"
		}
		return groupReplies(in, func(local string) string {
			if local == "gone" {
				return "250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n"
			}
			return accepted
		}, func(local string) string {
			if local == "odd" {
				return "502 5.5.2 RSET not now\r\n"
			}
			return "250 reset\r\n"
		})
	})
	s := scriptedSender(t, url)
	res := s.SendBatch(context.Background(), batchOf("gone", "odd", "gone", "d"))
	if !deliver.IsPermanent(res[0].Err) {
		t.Errorf("refusal before the refused RSET: %v, want permanent", res[0].Err)
	}
	if res[1].Err != nil || res[3].Err != nil {
		t.Errorf("accepted messages: %v, %v, want sent", res[1].Err, res[3].Err)
	}
	var te *deliver.TransientError
	if !errors.As(res[2].Err, &te) || te.Code != "550" || deliver.IsPermanent(res[2].Err) {
		t.Errorf("refusal after the refused RSET: %v, want a transient 550", res[2].Err)
	}
	if got := reads(); len(got) != 1 {
		t.Errorf("server reads %q, want the one group", got)
	}
	s.mu.Lock()
	n := len(s.idle)
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("%d idle connections after a refused RSET, want 0", n)
	}
}

// A connection that breaks in the middle of the replies: what was accepted
// is sent, the rest is transient, and the next batch uses a new connection.
func TestBatchConnectionBrokenMidGroup(t *testing.T) {
	url, reads := scriptedServer(t, []string{"PIPELINING", "CHUNKING"}, func(in string) string {
		if strings.HasPrefix(in, "MAIL") {
			return accepted + "250 reset\r\n250 ok\r\n" + hangUp
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

// MAIL FROM carries only crier's own sender address: its refusal is a fault
// of the configuration or the relay account and fails no delivery.
func TestRefusedSenderIsAChannelFault(t *testing.T) {
	for _, exts := range [][]string{{"PIPELINING", "CHUNKING"}, {"PIPELINING"}, nil} {
		t.Run(strings.Join(exts, "+"), func(t *testing.T) {
			url, _ := scriptedServer(t, exts, func(in string) string {
				switch {
				case strings.HasPrefix(in, "MAIL") && strings.Contains(in, "BDAT"):
					return "553 5.7.1 sender not owned by user\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n250 reset\r\n"
				case strings.HasPrefix(in, "MAIL") && strings.Contains(in, "DATA"):
					return "553 5.7.1 sender not owned by user\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n"
				case strings.HasPrefix(in, "MAIL"):
					return "553 5.7.1 sender not owned by user\r\n"
				case strings.HasPrefix(in, "RSET"):
					return "250 reset\r\n"
				}
				return "500 unexpected\r\n"
			})
			s := scriptedSender(t, url)
			_, err := s.Send(context.Background(), scriptedMessage())
			var f *deliver.ChannelFault
			if !errors.As(err, &f) || f.Code != "553" || deliver.IsPermanent(err) {
				t.Fatalf("Send with the sender refused: %v, want a channel fault 553", err)
			}
		})
	}
}
