package email

import (
	"bytes"
	"context"
	"fmt"

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
// Every transaction of the group ends with RSET in the same write, so a
// refusal leaves the next one a cleared session (RFC 3030 leaves the state
// indeterminate after a refused BDAT and requires RSET), and each message
// is judged by its own replies only.
func (s *Sender) SendBatch(ctx context.Context, ms []deliver.Message) []deliver.SendResult {
	res := make([]deliver.SendResult, len(ms))
	if len(ms) < 2 || s.limiter != nil {
		for i, m := range ms {
			res[i].ProviderID, res[i].Err = s.Send(ctx, m)
		}
		return res
	}
	items := make([]outgoing, 0, len(ms))
	defer func() {
		for _, o := range items {
			s.putBuffer(o.buf)
		}
	}()
	// index[k] is the position in ms of items[k].
	index := make([]int, 0, len(ms))
	for i, m := range ms {
		o, err := s.prepare(m)
		if err != nil {
			res[i].Err = err
			continue
		}
		items, index = append(items, o), append(index, i)
	}
	if len(items) == 0 {
		return res
	}
	failAll := func(err func(o outgoing) error) []deliver.SendResult {
		for k, o := range items {
			res[index[k]].Err = err(o)
		}
		return res
	}

	pc, err := s.acquire(ctx)
	if err != nil {
		return failAll(func(o outgoing) error {
			return deliver.Transient("", fmt.Errorf("email: send to %s: %w", o.to.Address, err))
		})
	}
	for retried := false; ; retried = true {
		if pc == nil {
			if pc, err = s.dial(ctx); err != nil {
				s.release()
				return failAll(func(o outgoing) error {
					return classifyConnect(fmt.Errorf("email: send to %s: %w", o.to.Address, err))
				})
			}
		}
		if !pc.chunking {
			// The relay has no CHUNKING: one transaction at a time.
			s.putIdle(pc)
			s.release()
			for k := range items {
				res[index[k]].ProviderID, res[index[k]].Err = s.Send(ctx, ms[index[k]])
			}
			return res
		}
		kept, keptIndex := items[:0], index[:0]
		for k, o := range items {
			if err := s.fit(&o, pc); err != nil {
				s.putBuffer(o.buf)
				res[index[k]].Err = err
				continue
			}
			kept, keptIndex = append(kept, o), append(keptIndex, index[k])
		}
		if items, index = kept, keptIndex; len(items) == 0 {
			s.putIdle(pc)
			s.release()
			return res
		}
		rcpts := make([]string, len(items))
		bodies := make([][]byte, len(items))
		for k, o := range items {
			rcpts[k], bodies[k] = o.rcpt, o.buf.Bytes()
		}
		g, keep := s.exchangeGroup(ctx, pc, rcpts, bodies)
		sent := 0
		for _, err := range g.errs {
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
		if ctx.Err() == nil && !retried && reused && sent == 0 && g.sts[0] == stageMail && droppedWhileIdle(g.errs[0]) {
			pc = nil
			continue
		}
		s.release()
		s.groupResults(ctx, items, index, g, res)
		return res
	}
}

// groupResults writes the result of each transaction of a group to res:
// each judged by its own replies, as every transaction started from a
// session that RSET cleared. Only once a RSET was refused is the session's
// state unknown, and a refusal after that counts as transient.
func (s *Sender) groupResults(ctx context.Context, items []outgoing, index []int, g groupResult, res []deliver.SendResult) {
	for k, o := range items {
		r := &res[index[k]]
		switch err := g.errs[k]; {
		case err == nil:
			r.ProviderID = o.id
		case k >= g.unsureFrom && ctx.Err() == nil:
			r.Err = transient(fmt.Errorf("email: send to %s: %s: %w (in a pipelined group whose session a refused RSET left unknown)", o.to.Address, g.sts[k], err))
		default:
			r.Err = sendError(ctx, o.to.Address, g.sts[k], err)
		}
	}
}

// exchangeGroup runs the transactions of a batch on pc in one pipelined
// group. keep reports whether pc can carry the next message: when every
// transaction was accepted or cleanly refused and every RSET accepted.
func (s *Sender) exchangeGroup(ctx context.Context, pc *conn, rcpts []string, bodies [][]byte) (g groupResult, keep bool) {
	stop, err := s.arm(ctx, pc)
	if err != nil {
		g = groupResult{sts: make([]stage, len(rcpts)), errs: make([]error, len(rcpts)), io: err}
		for i := range g.errs {
			g.errs[i] = err
		}
		return g, false
	}
	defer func() {
		if !stop() {
			keep = false
		}
	}()
	scratch := s.bufs.Get().(*bytes.Buffer)
	g = s.chunkedGroup(pc, rcpts, bodies, scratch)
	s.putBuffer(scratch)
	if g.io != nil || g.unclean {
		return g, false
	}
	for _, err := range g.errs {
		if err != nil && !cleanRejection(err) {
			return g, false
		}
	}
	return g, true
}
