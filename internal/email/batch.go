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
// CHUNKING, the messages are sent one at a time.
//
// Every transaction of the group ends with RSET in the same write, so a
// refusal leaves the next one a cleared session (RFC 3030 leaves the state
// indeterminate after a refused BDAT and requires RSET), and each message
// is judged by its own replies only.
func (s *Sender) SendBatch(ctx context.Context, ms []deliver.Message) []deliver.SendResult {
	res := make([]deliver.SendResult, len(ms))
	if len(ms) < 2 {
		s.sendEach(ctx, ms, res)
		return res
	}
	b := batch{ms: ms, res: res, items: make([]outgoing, 0, len(ms)), index: make([]int, 0, len(ms))}
	defer func() {
		for _, o := range b.items {
			s.putBuffer(o.buf)
		}
	}()
	for i, m := range ms {
		o, err := s.prepare(m)
		if err != nil {
			res[i].Err = err
			continue
		}
		b.items, b.index = append(b.items, o), append(b.index, i)
	}
	if len(b.items) > 0 {
		s.sendGroup(ctx, &b)
	}
	return res
}

// sendEach sends ms one at a time, writing each result to res.
func (s *Sender) sendEach(ctx context.Context, ms []deliver.Message, res []deliver.SendResult) {
	for i, m := range ms {
		res[i].ProviderID, res[i].Err = s.Send(ctx, m)
	}
}

// batch is a SendBatch in progress: the messages composed for sending
// (items) and where each one's result goes (res[index[k]]).
type batch struct {
	ms    []deliver.Message
	res   []deliver.SendResult
	items []outgoing
	index []int
}

// failAll gives every item the error err returns for it.
func (b *batch) failAll(err func(o outgoing) error) {
	for k, o := range b.items {
		b.res[b.index[k]].Err = err(o)
	}
}

// sendGroup sends the items of b on one connection, in one pipelined
// group when the relay offers CHUNKING, else one at a time.
func (s *Sender) sendGroup(ctx context.Context, b *batch) {
	pc, err := s.acquire(ctx)
	if err != nil {
		b.failAll(func(o outgoing) error {
			return deliver.Transient("", fmt.Errorf("email: send to %s: %w", o.to.Address, err))
		})
		return
	}
	for retried := false; ; retried = true {
		if pc == nil {
			if pc, err = s.dial(ctx); err != nil {
				s.release()
				b.failAll(func(o outgoing) error {
					return classifyConnect(fmt.Errorf("email: send to %s: %w", o.to.Address, err))
				})
				return
			}
		}
		if !pc.chunking {
			// The relay has no CHUNKING: one transaction at a time, each
			// taking a connection of its own.
			s.putIdle(pc)
			s.release()
			for k := range b.items {
				i := b.index[k]
				b.res[i].ProviderID, b.res[i].Err = s.Send(ctx, b.ms[i])
			}
			return
		}
		if s.fitBatch(b, pc); len(b.items) == 0 {
			s.putIdle(pc)
			s.release()
			return
		}
		g, keep := s.exchangeGroup(ctx, pc, b.rcpts(), b.bodies())
		// As in Send: a reused connection that the server had closed while
		// it was idle took nothing; the whole group goes again, once.
		if s.settle(pc, g, keep) && ctx.Err() == nil && !retried {
			pc = nil
			continue
		}
		s.release()
		s.groupResults(ctx, b, g)
		return
	}
}

// fitBatch composes the items of b again for pc's server where they need
// it (see fit), dropping those that fail with their error.
func (s *Sender) fitBatch(b *batch, pc *conn) {
	kept, keptIndex := b.items[:0], b.index[:0]
	for k, o := range b.items {
		if err := s.fit(&o, pc); err != nil {
			s.putBuffer(o.buf)
			b.res[b.index[k]].Err = err
			continue
		}
		kept, keptIndex = append(kept, o), append(keptIndex, b.index[k])
	}
	b.items, b.index = kept, keptIndex
}

func (b *batch) rcpts() []string {
	out := make([]string, len(b.items))
	for k, o := range b.items {
		out[k] = o.rcpt
	}
	return out
}

func (b *batch) bodies() [][]byte {
	out := make([][]byte, len(b.items))
	for k, o := range b.items {
		out[k] = o.buf.Bytes()
	}
	return out
}

// settle returns pc to the pool or closes it after group g, and reports
// whether g looks like a connection that the server had closed while it
// was idle: reused, nothing accepted, and the first MAIL answered with 421
// or no reply at all.
func (s *Sender) settle(pc *conn, g groupResult, keep bool) (droppedIdle bool) {
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
	return reused && sent == 0 && g.sts[0] == stageMail && droppedWhileIdle(g.errs[0])
}

// groupResults writes the result of each transaction of a group to res:
// each judged by its own replies, as every transaction started from a
// session that RSET cleared. Only once a RSET was refused is the session's
// state unknown, and a refusal after that counts as transient.
func (s *Sender) groupResults(ctx context.Context, b *batch, g groupResult) {
	for k, o := range b.items {
		r := &b.res[b.index[k]]
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
