package email

import (
	"bytes"
	"context"
	"fmt"
	"net/mail"

	"github.com/crier-dev/crier/internal/deliver"
)

// SendBatch sends each message of ms as Send would and returns their
// results in order (deliver.BatchSender).
//
// On a relay that offers PIPELINING and CHUNKING the messages share one
// connection and one pipelined group: every transaction goes out in a
// single write and their replies come back together, so a batch costs one
// round trip and one write at each end instead of one per message. Without
// CHUNKING, and under a rate limit, the messages are sent one at a time.
//
// Once a transaction of the group has failed, the session's state is not
// known for the transactions after it (RFC 3030 leaves it indeterminate
// after a refused BDAT), so a refusal of a later one counts as transient.
// An acceptance always counts.
func (s *Sender) SendBatch(ctx context.Context, ms []deliver.Message) []deliver.SendResult {
	res := make([]deliver.SendResult, len(ms))
	if len(ms) < 2 || s.limiter != nil {
		for i, m := range ms {
			res[i].ProviderID, res[i].Err = s.Send(ctx, m)
		}
		return res
	}
	type item struct {
		i        int
		to       *mail.Address
		id, rcpt string
		buf      *bytes.Buffer
		used8bit bool
	}
	items := make([]item, 0, len(ms))
	defer func() {
		for _, it := range items {
			s.putBuffer(it.buf)
		}
	}()
	eightBit := s.eightBit.Load()
	for i, m := range ms {
		to, err := parseRecipient(m.To)
		if err != nil {
			res[i].Err = deliver.Permanent("", err)
			continue
		}
		id, err := s.messageID(m)
		if err != nil {
			res[i].Err = deliver.Permanent("", err)
			continue
		}
		buf := s.bufs.Get().(*bytes.Buffer)
		buf.Reset()
		used8bit, err := s.compose(buf, m, to, id, eightBit, true)
		if err != nil {
			s.putBuffer(buf)
			res[i].Err = deliver.Permanent("", err)
			continue
		}
		rcpt := (&mail.Address{Address: to.Address}).String()
		items = append(items, item{i: i, to: to, id: id, rcpt: rcpt, buf: buf, used8bit: used8bit})
	}
	if len(items) == 0 {
		return res
	}
	failAll := func(err func(it item) error) []deliver.SendResult {
		for _, it := range items {
			res[it.i].Err = err(it)
		}
		return res
	}

	pc, err := s.acquire(ctx)
	if err != nil {
		return failAll(func(it item) error {
			return deliver.Transient("", fmt.Errorf("email: send to %s: %w", it.to.Address, err))
		})
	}
	for retried := false; ; retried = true {
		if pc == nil {
			if pc, err = s.dial(ctx); err != nil {
				s.release()
				return failAll(func(it item) error {
					return classifyConnect(fmt.Errorf("email: send to %s: %w", it.to.Address, err))
				})
			}
		}
		if !pc.chunking {
			// The relay has no CHUNKING: one transaction at a time.
			s.putIdle(pc)
			s.release()
			for _, it := range items {
				res[it.i].ProviderID, res[it.i].Err = s.Send(ctx, ms[it.i])
			}
			return res
		}
		kept := items[:0]
		for _, it := range items {
			if it.used8bit && !pc.eightBit {
				// This server does not take 8bit after all: quoted-printable.
				it.buf.Reset()
				if it.used8bit, err = s.compose(it.buf, ms[it.i], it.to, it.id, false, true); err != nil {
					s.putBuffer(it.buf)
					res[it.i].Err = deliver.Permanent("", err)
					continue
				}
			}
			kept = append(kept, it)
		}
		if items = kept; len(items) == 0 {
			s.putIdle(pc)
			s.release()
			return res
		}
		rcpts := make([]string, len(items))
		bodies := make([][]byte, len(items))
		for k, it := range items {
			rcpts[k], bodies[k] = it.rcpt, it.buf.Bytes()
		}
		sts, errs, keep := s.exchangeGroup(ctx, pc, rcpts, bodies)
		sent := 0
		for _, err := range errs {
			if err == nil {
				sent++
			}
		}
		reused := pc.sent > 0
		pc.sent += sent
		if keep {
			s.putIdle(pc)
		} else {
			discard(pc)
		}
		// As in Send: a reused connection that the server had closed while
		// it was idle took nothing; the whole group goes again, once.
		if !retried && reused && sent == 0 && sts[0] == stageMail && droppedWhileIdle(errs[0]) && ctx.Err() == nil {
			pc = nil
			continue
		}
		s.release()
		failed := false
		for k, it := range items {
			err := errs[k]
			switch {
			case err == nil:
				res[it.i].ProviderID = it.id
			case ctx.Err() != nil:
				res[it.i].Err = deliver.Transient("", fmt.Errorf("email: send to %s: %s: %w (%v)", it.to.Address, sts[k], ctx.Err(), err))
			case failed:
				res[it.i].Err = transient(fmt.Errorf("email: send to %s: %s: %w (after an earlier transaction of the same pipelined group failed)", it.to.Address, sts[k], err))
			default:
				res[it.i].Err = classify(fmt.Errorf("email: send to %s: %s: %w", it.to.Address, sts[k], err))
			}
			failed = failed || err != nil
		}
		return res
	}
}

// exchangeGroup runs the transactions of a batch on pc in one pipelined
// group. keep reports whether pc can carry the next message: when every
// transaction was accepted or cleanly refused and RSET cleared the session.
func (s *Sender) exchangeGroup(ctx context.Context, pc *conn, rcpts []string, bodies [][]byte) (sts []stage, errs []error, keep bool) {
	stop, err := s.arm(ctx, pc)
	if err != nil {
		errs = make([]error, len(rcpts))
		for i := range errs {
			errs[i] = err
		}
		return make([]stage, len(rcpts)), errs, false
	}
	defer func() {
		if !stop() {
			keep = false
		}
	}()
	scratch := s.bufs.Get().(*bytes.Buffer)
	sts, errs, ioErr := s.chunkedGroup(pc, rcpts, bodies, scratch)
	s.putBuffer(scratch)
	if ioErr != nil {
		return sts, errs, false
	}
	refused := false
	for _, err := range errs {
		if err == nil {
			continue
		}
		if !cleanRejection(err) {
			return sts, errs, false
		}
		refused = true
	}
	if !refused {
		return sts, errs, true
	}
	return sts, errs, pc.client.Reset() == nil
}
