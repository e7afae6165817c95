//go:build linux

package nfq

import (
	"context"
	"encoding/binary"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/execute"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// The seams between the per-packet logic and the kernel, so that the logic
// is tested without a queue, a raw socket or a clock (the verdicts' seam
// is the kernel interface under the verdictWriter).
type (
	sender interface {
		Send(pkt []byte) (int, error)
	}
	decoder interface {
		DecodeWire(ip []byte, wireLen int, seg *statetrack.Segment) error
	}
)

// counters are the queue's statistics besides the executor's, updated by
// the reader and the timer goroutine and read by Stats from any goroutine.
type counters struct {
	received, accepted, dropped                           atomic.Uint64
	decodeFailures, handlerPanics, verdictErrors, readErr atomic.Uint64
	resetsSent, resetsFailed                              atomic.Uint64
	healed, healsFailed                                   atomic.Uint64
}

// core carries out the handler's verdicts for one queue: it is the
// executor's live Output (verdicts to the kernel, copies to the raw
// socket). Its mutex serializes every call into the handler and the
// executor: the reader's packets, the timer goroutine's releases and
// copies, and expiry ticks.
//
// Verdicts are collected in a verdictWriter and written when the reader
// ends a burst (endBurst: the socket is read dry, or the writer is full),
// or at once when the timer goroutine releases held packets.
type core struct {
	h   Handler
	dec decoder
	w   *verdictWriter
	inj sender
	log *slog.Logger
	// quiet: accept verdicts carry VerdictMark, and QuietMark for a
	// connection that may go quiet (Options.Quiet); the packet's other
	// mark bits are kept.
	quiet bool
	// heals, with blackholes (Options.Blackhole): the verdict that
	// starts one marks its packet for the kernel's filter chain (see
	// dark.go), and a blackhole with a duration waits here to heal. nil
	// without: the pipeline alone drops what reaches it of a dark
	// connection.
	heals *heals

	mu  sync.Mutex
	x   *execute.Executor
	seg statetrack.Segment // reused for every packet
	// p and v are the packet and verdict of the last packet handled,
	// reused so that handing them to the executor does not allocate
	// (p.Data aliases the reader's buffer).
	p execute.Packet
	v rules.Verdict
	// rst is the buffer a reset's RSTs are built in.
	rst [decode.RSTLen]byte

	// wake tells the timer goroutine that the earliest deadline moved.
	wake chan struct{}
	c    counters
}

func newCore(h Handler, dec decoder, w *verdictWriter, inj sender, quiet bool, hs *heals, log *slog.Logger, tap execute.Tap) *core {
	c := &core{h: h, dec: dec, w: w, inj: inj, quiet: quiet, heals: hs, log: log, wake: make(chan struct{}, 1)}
	c.x = execute.New(c, execute.Options{Log: log, Tap: tap})
	return c
}

// packet gives exactly one verdict for the packet id, now or (delay) when
// its hold expires; the reader calls endBurst after a burst of packets.
// pkt is the copied part of the packet, wireLen its whole length, mark its
// mark. pkt is not kept: a packet to be duplicated is copied.
func (c *core) packet(id uint32, pkt []byte, wireLen int, mark uint32, now time.Time) {
	c.c.received.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w.full() {
		c.flush(false)
	}
	if c.x.Stopped() {
		c.accept(id, mark, now)
		return
	}
	if err := c.dec.DecodeWire(pkt, wireLen, &c.seg); err != nil {
		if n := c.c.decodeFailures.Add(1); execute.LogWorthy(n) {
			c.log.Debug("packet not decoded, accepted", "id", id, "failures", n, "err", err)
		}
		c.accept(id, mark, now)
		return
	}
	if !c.handle(now) {
		c.accept(id, mark, now)
		return
	}
	c.p = execute.Packet{ID: id, Mark: mark, Data: pkt, Len: wireLen}
	if c.x.Carry(&c.p, &c.v, now) {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// messages handles the netlink messages of one datagram received at now:
// packets, and error reports of verdicts the kernel refused.
func (c *core) messages(b []byte, m *packetMsg, now time.Time) {
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b))
		if l < nlmsgHdrLen || l > len(b) {
			c.malformed(l)
			return
		}
		body := b[nlmsgHdrLen:l]
		switch binary.NativeEndian.Uint16(b[4:]) {
		case msgType(nfqnlMsgPacket):
			if parsePacket(body, m) {
				c.packet(m.id, m.payload, m.wireLen, m.mark, now)
			} else {
				c.malformed(l)
			}
		case unix.NLMSG_ERROR:
			if len(body) >= 4 {
				if errno := -int32(binary.NativeEndian.Uint32(body)); errno != 0 {
					if n := c.c.verdictErrors.Add(1); execute.LogWorthy(n) {
						c.log.Error("verdict refused", "errors", n, "err", unix.Errno(errno))
					}
				}
			}
		}
		b = b[min(align4(l), len(b)):]
	}
}

// malformed counts a message that does not parse as a read error.
func (c *core) malformed(length int) {
	if n := c.c.readErr.Add(1); execute.LogWorthy(n) {
		c.log.Error("read from queue", "errors", n, "err", errMalformedMsg, "length", length)
	}
}

// Accept lets a packet read at now through (execute.Output); c.mu is held. A
// packet that starts a blackhole in the other direction is marked for it.
func (c *core) Accept(p *execute.Packet, v *rules.Verdict, now time.Time) {
	if v.Dark != 0 && c.heals != nil {
		c.c.accepted.Add(1)
		c.darken(p, v, now)
		return
	}
	e := c.acceptEntry(p.ID, p.Mark, v.Obs.ConnID, v.Quiet, now)
	e.anchor = e.quiet && v.Closing
	c.c.accepted.Add(1)
	c.add(e)
}

// add collects a verdict; c.mu is held. A quiet verdict of the same
// connection that it declines is reported to the handler at once: the
// connection's next packet may be in the same burst.
func (c *core) add(e verdictEntry) {
	if c.w.add(e) {
		var ok bool
		defer c.recoverHandler(&ok)
		c.h.Declined(e.conn)
		ok = true
	}
}

// darken accepts the packet that starts a blackhole with the marks that
// make the kernel's filter chain darken its connection (and drop it, when
// its own direction goes dark), and schedules the heal; c.mu is held.
func (c *core) darken(p *execute.Packet, v *rules.Verdict, now time.Time) {
	mark := p.Mark&^(QuietMark|VerdictMark|DarkSameMark|DarkOppositeMark) | VerdictMark
	if v.Dark.Has(v.Obs.From.Other()) {
		mark |= DarkSameMark
	}
	if v.Dark.Has(v.Obs.From) {
		mark |= DarkOppositeMark
	}
	c.add(verdictEntry{id: p.ID, verdict: verdictAccept, mark: mark, setMark: true, conn: v.Obs.ConnID, read: now})
	var at time.Time // never
	if v.For > 0 {
		at = now.Add(v.For)
	}
	if !c.heals.add(at, v.Obs.Seg.Src, v.Obs.Seg.Dst) {
		if n := c.c.healsFailed.Add(1); execute.LogWorthy(n) {
			c.log.Error("blackhole not healed: too many waiting", "waiting", maxHeals, "failures", n)
		}
		return
	}
	if at.IsZero() {
		return
	}
	select { // the heal may be the earliest deadline
	case c.wake <- struct{}{}:
	default:
	}
}

// Drop drops a packet read at now and sends the RSTs of a reset in its
// stead through the raw socket (execute.Output); c.mu is held. The
// verdicts collected so far are written first: an RST must not overtake
// a packet accepted before it (an ACK still in the batch would reach a
// socket the RST closed and draw another RST). A failed RST is counted.
// The packet that starts a blackhole in its own direction is accepted
// with marks that make the kernel darken its connection and drop it (see
// dark.go).
func (c *core) Drop(p *execute.Packet, v *rules.Verdict, now time.Time) {
	c.c.dropped.Add(1)
	if v.Dark != 0 && c.heals != nil {
		c.darken(p, v, now)
		return
	}
	c.add(verdictEntry{id: p.ID, verdict: verdictDrop, conn: v.Obs.ConnID, read: now})
	rs := v.Resets()
	if rs.N > 0 {
		c.flush(false)
	}
	for i := range rs.N {
		if _, err := c.inj.Send(decode.AppendRST(c.rst[:0], &rs.Seg[i])); err != nil {
			if n := c.c.resetsFailed.Add(1); execute.LogWorthy(n) {
				c.log.Error("send reset", "failures", n, "err", err)
			}
			continue
		}
		c.c.resetsSent.Add(1)
	}
}

// Release accepts a held packet (execute.Output); c.mu is held. Its
// verdict carries VerdictMark without QuietMark, so it wakes its
// connection in the kernel should it have gone quiet since (the tracker
// hears of it from the connection's next packet, queued again): a
// connection whose packets are all held would otherwise keep a stale
// quiet bit while the bypass is out, and bypass unseen once it is back.
func (c *core) Release(p *execute.Packet, v *rules.Verdict, _ time.Time) {
	if c.w.full() {
		c.flush(false)
	}
	c.add(c.acceptEntry(p.ID, p.Mark, v.Obs.ConnID, false, time.Time{}))
}

// SendCopy sends one copy through the raw socket (execute.Output).
func (c *core) SendCopy(p *execute.Packet, _ *rules.Verdict, _ time.Time) error {
	_, err := c.inj.Send(p.Data)
	return err
}

// Delivered tells the handler that a held packet or a copy went through
// (execute.Output); a panic is counted.
func (c *core) Delivered(v *rules.Verdict, now time.Time) {
	var ok bool
	defer c.recoverHandler(&ok)
	c.h.Deliver(v, now)
	ok = true
}

// accept lets a packet of no known connection, read at read, through.
func (c *core) accept(id, mark uint32, read time.Time) {
	c.c.accepted.Add(1)
	c.w.add(c.acceptEntry(id, mark, 0, false, read))
}

// acceptEntry is the accept verdict of a packet read at read (zero: a
// held packet's release): with quiet connections its mark gets
// VerdictMark (and QuietMark if quiet, when flushed), loses
// DarkSameMark and DarkOppositeMark with blackholes (the filter chain
// would darken its connection on them) and keeps its other bits.
func (c *core) acceptEntry(id, mark uint32, conn uint64, quiet bool, read time.Time) verdictEntry {
	e := verdictEntry{id: id, verdict: verdictAccept, conn: conn, read: read}
	if c.quiet {
		clear := QuietMark | VerdictMark
		if c.heals != nil {
			clear |= DarkSameMark | DarkOppositeMark
		}
		e.mark, e.setMark, e.quiet = mark&^clear|VerdictMark, true, quiet
	}
	return e
}

// endBurst writes the verdicts of a burst of packets. drained reports
// that the burst ended because the socket had nothing more to read: only
// then may a connection go quiet, since no later packet of it waits
// unread in the queue (one may still race the verdict: see QuietMark).
func (c *core) endBurst(drained bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flush(drained)
}

// flush writes the collected verdicts and tells the handler which
// connections went quiet and which quiet verdicts it declined; c.mu is
// held.
func (c *core) flush(quietOK bool) {
	n := len(c.w.entries)
	if err := c.w.flush(quietOK, c.x.Holding() == 0); err != nil {
		if e := c.c.verdictErrors.Add(uint64(n)); execute.LogWorthy(e) {
			c.log.Error("set verdicts", "errors", e, "err", err)
		}
	}
	if len(c.w.quieted)+len(c.w.declined) > 0 {
		now := time.Now()
		var done bool
		defer c.recoverHandler(&done)
		for _, conn := range c.w.declined {
			c.h.Declined(conn)
		}
		for _, conn := range c.w.quieted {
			c.h.Quieted(conn, now)
		}
		done = true
	}
}

// handle calls the handler on c.seg and keeps its verdict in c.v; ok is
// false if it panicked.
func (c *core) handle(now time.Time) (ok bool) {
	defer c.recoverHandler(&ok)
	c.v = c.h.Handle(&c.seg, now)
	return true
}

// expire runs the handler's expiry.
func (c *core) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(now)
}

// expireLocked is expire with c.mu held.
func (c *core) expireLocked(now time.Time) {
	var ok bool
	defer c.recoverHandler(&ok)
	c.h.Expire(now)
	ok = true
}

// recoverHandler, deferred around a handler call that sets *ok when it
// returns, counts and logs a panic instead of letting it end the reader.
func (c *core) recoverHandler(ok *bool) {
	if *ok {
		return
	}
	r := recover()
	if n := c.c.handlerPanics.Add(1); execute.LogWorthy(n) {
		c.log.Error("handler panicked; packet accepted", "panic", r, "panics", n)
	}
}

// fire releases every held packet, sends every copy and heals every
// blackhole due at now, and returns the next deadline, if anything is
// left.
func (c *core) fire(now time.Time) (next time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.x.Fire(now)
	c.flush(false)
	next, ok = c.x.Next()
	if c.heals == nil {
		return next, ok
	}
	healed, errs := c.heals.fire(now)
	c.c.healed.Add(uint64(healed))
	for _, err := range errs {
		if n := c.c.healsFailed.Add(1); execute.LogWorthy(n) {
			c.log.Error("heal blackhole", "failures", n, "err", err)
		}
	}
	if healed+len(errs) > 0 {
		// The handler heals its blackholes too (its healed events) when
		// the kernel does, not at its next expiry: a healed connection
		// that is quiet sends it nothing, and a run may end before then.
		c.expireLocked(now)
	}
	if h, hok := c.heals.next(); hok && (!ok || h.Before(next)) {
		next, ok = h, true
	}
	return next, ok
}

// stop releases every held packet (accept, then Deliver), cancels the
// copies not yet sent, and makes every later packet an immediate accept
// that bypasses the handler.
func (c *core) stop(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.x.Stop(now)
	c.flush(false)
}

// expireEvery is how often the handler's Expire is called.
const expireEvery = time.Second

// schedule is the timer goroutine: one per queue, whatever the number of
// held packets. It releases held packets and sends copies when due, and
// runs the handler's expiry, until ctx is done.
func (c *core) schedule(ctx context.Context, clock func() time.Time) {
	nextExpire := clock().Add(expireEvery)
	t := time.NewTimer(expireEvery)
	defer t.Stop()
	for {
		now := clock()
		if !now.Before(nextExpire) {
			c.expire(now)
			nextExpire = now.Add(expireEvery)
		}
		wait := nextExpire.Sub(now)
		if next, ok := c.fire(now); ok {
			wait = min(wait, next.Sub(now))
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-t.C:
		}
	}
}
