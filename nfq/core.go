//go:build linux

package nfq

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/pipeline"
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

// counters are the queue's statistics, updated by the reader and the timer
// goroutine and read by Stats from any goroutine.
type counters struct {
	received, accepted, dropped, delayed, duplicated      atomic.Uint64
	copiesSent, copiesFailed, copiesCancelled, copiesSkip atomic.Uint64
	decodeFailures, handlerPanics, verdictErrors, readErr atomic.Uint64
	held                                                  atomic.Int64
}

// core carries out the handler's verdicts for one queue. Its mutex
// serializes every call into the handler: the reader's packets, the timer
// goroutine's releases and copies, and expiry ticks.
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
	// marks: accept verdicts carry VerdictMark, and QuietMark for a
	// connection whose data phase may bypass the queue (selective
	// queueing); the packet's other mark bits are kept.
	marks bool

	mu       sync.Mutex
	seg      statetrack.Segment // reused for every packet
	held     heldQueue
	holding  int    // delayed packets in held: their verdicts are pending
	seq      uint64 // orders held entries with equal deadlines
	stopping bool

	// wake tells the timer goroutine that the earliest deadline moved.
	wake chan struct{}
	c    counters
}

func newCore(h Handler, dec decoder, w *verdictWriter, inj sender, marks bool, log *slog.Logger) *core {
	return &core{h: h, dec: dec, w: w, inj: inj, marks: marks, log: log, wake: make(chan struct{}, 1)}
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
	if c.stopping {
		c.accept(id, mark)
		return
	}
	if err := c.dec.DecodeWire(pkt, wireLen, &c.seg); err != nil {
		if n := c.c.decodeFailures.Add(1); logWorthy(n) {
			c.log.Debug("packet not decoded, accepted", "id", id, "failures", n, "err", err)
		}
		c.accept(id, mark)
		return
	}
	v, ok := c.handle(now)
	if !ok {
		c.accept(id, mark)
		return
	}
	switch v.Action {
	case rules.Drop:
		c.c.dropped.Add(1)
		c.w.add(verdictEntry{id: id, verdict: verdictDrop, conn: v.Obs.ConnID})
	case rules.Delay:
		c.c.delayed.Add(1)
		c.holding++
		c.push(&heldEntry{at: now.Add(v.Hold), id: id, mark: mark, v: v})
	case rules.Duplicate:
		c.c.duplicated.Add(1)
		c.acceptConn(id, mark, v.Obs.ConnID, false)
		switch {
		case v.Copies == 0:
		case len(pkt) < wireLen:
			c.c.copiesSkip.Add(uint64(v.Copies))
			c.log.Warn("duplicate of a packet copied in part: copies not sent (use copy range 0)",
				"id", id, "captured", len(pkt), "length", wireLen)
		default:
			c.push(&heldEntry{at: now.Add(v.After), pkt: bytes.Clone(pkt), v: v})
		}
	default:
		c.acceptConn(id, mark, v.Obs.ConnID, v.Quiet)
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
					if n := c.c.verdictErrors.Add(1); logWorthy(n) {
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
	if n := c.c.readErr.Add(1); logWorthy(n) {
		c.log.Error("read from queue", "errors", n, "err", errMalformedMsg, "length", length)
	}
}

// accept lets a packet of no known connection through.
func (c *core) accept(id, mark uint32) { c.acceptConn(id, mark, 0, false) }

// acceptConn lets a packet of connection conn through; quiet lets the
// connection's data phase bypass the queue from then on.
func (c *core) acceptConn(id, mark uint32, conn uint64, quiet bool) {
	c.c.accepted.Add(1)
	c.w.add(c.acceptEntry(id, mark, conn, quiet))
}

// acceptEntry is the accept verdict of a packet: with selective queueing
// its mark gets VerdictMark (and QuietMark if quiet, when flushed) and
// keeps its other bits.
func (c *core) acceptEntry(id, mark uint32, conn uint64, quiet bool) verdictEntry {
	e := verdictEntry{id: id, verdict: verdictAccept, conn: conn}
	if c.marks {
		e.mark, e.setMark, e.quiet = mark&^(QuietMark|VerdictMark)|VerdictMark, true, quiet
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
// connections went quiet; c.mu is held.
func (c *core) flush(quietOK bool) {
	n := len(c.w.entries)
	if err := c.w.flush(quietOK, c.holding == 0); err != nil {
		if e := c.c.verdictErrors.Add(uint64(n)); logWorthy(e) {
			c.log.Error("set verdicts", "errors", e, "err", err)
		}
	}
	if q, ok := c.h.(Quieter); ok && len(c.w.quieted) > 0 {
		now := time.Now()
		var done bool
		defer c.recoverHandler(&done)
		for _, conn := range c.w.quieted {
			q.Quieted(conn, now)
		}
		done = true
	}
}

// handle calls the handler on c.seg; ok is false if it panicked.
func (c *core) handle(now time.Time) (v pipeline.Verdict, ok bool) {
	defer c.recoverHandler(&ok)
	return c.h.Handle(&c.seg, now), true
}

// deliver tells the handler that a held packet or a copy went through.
func (c *core) deliver(v *pipeline.Verdict, now time.Time) {
	var ok bool
	defer c.recoverHandler(&ok)
	c.h.Deliver(v, now)
	ok = true
}

// expire runs the handler's expiry, if it has one.
func (c *core) expire(now time.Time) {
	e, isExpirer := c.h.(Expirer)
	if !isExpirer {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var ok bool
	defer c.recoverHandler(&ok)
	e.Expire(now)
	ok = true
}

// recoverHandler, deferred around a handler call that sets *ok when it
// returns, counts and logs a panic instead of letting it end the reader.
func (c *core) recoverHandler(ok *bool) {
	if *ok {
		return
	}
	r := recover()
	if n := c.c.handlerPanics.Add(1); logWorthy(n) {
		c.log.Error("handler panicked; packet accepted", "panic", r, "panics", n)
	}
}

// push holds an entry until its deadline; c.mu is held.
func (c *core) push(e *heldEntry) {
	c.seq++
	e.seq = c.seq
	heap.Push(&c.held, e)
	c.c.held.Add(1)
	if c.held[0] == e {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// fire releases every entry due at now and returns the next deadline, if
// any entry is left.
func (c *core) fire(now time.Time) (next time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.held) > 0 && !c.held[0].at.After(now) {
		e := heap.Pop(&c.held).(*heldEntry)
		c.c.held.Add(-1)
		if e.pkt == nil {
			c.release(e, now)
			continue
		}
		c.sendCopies(e, now)
	}
	c.flush(false)
	if len(c.held) == 0 {
		return time.Time{}, false
	}
	return c.held[0].at, true
}

func (c *core) sendCopies(e *heldEntry, now time.Time) {
	for range e.v.Copies {
		if _, err := c.inj.Send(e.pkt); err != nil {
			if n := c.c.copiesFailed.Add(1); logWorthy(n) {
				c.log.Error("send duplicate", "failures", n, "err", err)
			}
			continue
		}
		c.c.copiesSent.Add(1)
		c.deliver(&e.v, now)
	}
}

// stop releases every held packet (accept, then Deliver), cancels the
// copies not yet sent, and makes every later packet an immediate accept
// that bypasses the handler.
func (c *core) stop(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopping = true
	for len(c.held) > 0 {
		e := heap.Pop(&c.held).(*heldEntry)
		c.c.held.Add(-1)
		if e.pkt != nil {
			c.c.copiesCancelled.Add(uint64(e.v.Copies))
			continue
		}
		c.release(e, now)
	}
	c.flush(false)
}

// release accepts a held packet and delivers it; c.mu is held.
func (c *core) release(e *heldEntry, now time.Time) {
	c.holding--
	if c.w.full() {
		c.flush(false)
	}
	c.w.add(c.acceptEntry(e.id, e.mark, e.v.Obs.ConnID, false))
	c.deliver(&e.v, now)
}

// expireEvery is how often a handler that implements Expirer is called.
const expireEvery = time.Second

// schedule is the timer goroutine: one per queue, whatever the number of
// held packets. It releases held packets and sends copies when due, and
// runs the handler's expiry, until ctx is done.
func (c *core) schedule(ctx context.Context, clock func() time.Time) {
	_, expires := c.h.(Expirer)
	nextExpire := clock().Add(expireEvery)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := clock()
		if expires && !now.Before(nextExpire) {
			c.expire(now)
			nextExpire = now.Add(expireEvery)
		}
		wait := time.Hour
		if expires {
			wait = nextExpire.Sub(now)
		}
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

// logWorthy reports whether the nth occurrence of a repeated problem is
// logged: the 1st, 2nd, 4th, 8th, ...
func logWorthy(n uint64) bool { return n&(n-1) == 0 }

// heldEntry is a delayed packet (pkt nil: its verdict is pending in the
// kernel) or the copies of a duplicated one (pkt is its own copy of the
// bytes).
type heldEntry struct {
	at   time.Time
	seq  uint64
	id   uint32
	mark uint32 // the packet's mark, kept in its verdict
	pkt  []byte
	v    pipeline.Verdict
}

// heldQueue is a min-heap of entries by deadline, then arrival.
type heldQueue []*heldEntry

func (h heldQueue) Len() int { return len(h) }
func (h heldQueue) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h heldQueue) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *heldQueue) Push(x any)   { *h = append(*h, x.(*heldEntry)) }
func (h *heldQueue) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
