// Package execute carries out verdicts, the same way for every driver: it
// lets a packet through, drops it, holds it until its delay ends, and sends
// the copies of a duplicated packet when they are due. The live queue
// (nfq) and the offline replay (internal/replay) drive it, each with its
// own Output (verdicts to the kernel and a raw socket; frames to a capture
// file) and its own clock: the executor never reads the time, every call
// is told it.
//
// What an action does is asked of rules.ActionType (Delivers, Holds,
// SendsCopies), not switched on: a new action changes rules and the
// Outputs, not this package.
package execute

import (
	"bytes"
	"container/heap"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tcpchaos/tcpchaos/rules"
)

// Packet is one packet as its driver received it.
type Packet struct {
	// ID and Mark identify the packet to its driver (the live queue's
	// packet id and mark); the executor only hands them back.
	ID, Mark uint32
	// Data is the captured part of the packet and Len its whole length,
	// more than len(Data) when the capture cut it. Data is not kept past
	// the call that passes it: what must outlive it is copied.
	Data []byte
	Len  int
}

// whole reports whether Data holds the whole packet.
func (p *Packet) whole() bool { return len(p.Data) >= p.Len }

// Output is the driver's side: what it does with a packet the executor
// has decided on. Its methods are called with the time the executor was
// given, and with the packet's verdict, so that an Output can carry out
// what a new action adds (an RST sent for a dropped packet) from it.
type Output interface {
	// Accept lets a packet through now.
	Accept(p *Packet, v *rules.Verdict, now time.Time)
	// Drop discards a packet.
	Drop(p *Packet, v *rules.Verdict, now time.Time)
	// Release lets a held packet through at the end of its hold (or at
	// Stop). Its Data is nil unless Options.KeepHeld.
	Release(p *Packet, v *rules.Verdict, now time.Time)
	// SendCopy sends one copy of a duplicated packet; p.Data is the whole
	// packet. A copy that fails is counted and not delivered.
	SendCopy(p *Packet, v *rules.Verdict, now time.Time) error
	// Delivered reports that a held packet was released or that a copy
	// was sent: the receiver's state moves (the pipeline's Deliver).
	Delivered(v *rules.Verdict, now time.Time)
}

// Tap sees what the executor is given and what it sends, to record it
// (internal/tap): every packet with its verdict as it arrives, and each
// copy of a duplicated packet as it is sent. It is called under the
// driver's serialization and must not keep p.Data.
type Tap interface {
	// Arrived is called first in Carry.
	Arrived(p *Packet, v *rules.Verdict, now time.Time)
	// CopySent is called for copy i (from 1) of v.Copies once the Output
	// sent it.
	CopySent(p *Packet, v *rules.Verdict, i int, now time.Time)
}

// Options configure an Executor.
type Options struct {
	// KeepHeld keeps a copy of a held packet's bytes for Release, for a
	// driver that writes them out itself (the replay); the live queue's
	// kernel keeps held packets.
	KeepHeld bool
	// Log receives the executor's diagnostics. Default: discarded.
	Log *slog.Logger
	// Tap, when not nil, is shown every packet and every copy sent.
	Tap Tap
}

// Stats are an Executor's counters.
type Stats struct {
	// Delayed counts packets held; Held of them are still held.
	Delayed uint64
	Held    int64
	// Duplicated counts packets whose copies were scheduled.
	Duplicated uint64
	// CopiesSent counts copies sent; CopiesFailed those the Output
	// refused; CopiesCancelled those not yet due at Stop; CopiesSkipped
	// those of packets captured in part, which cannot be copied.
	CopiesSent, CopiesFailed, CopiesCancelled, CopiesSkipped uint64
}

// counters are Stats, updated under the driver's serialization and read
// by Stats from any goroutine.
type counters struct {
	delayed, duplicated                                   atomic.Uint64
	copiesSent, copiesFailed, copiesCancelled, copiesSkip atomic.Uint64
	held                                                  atomic.Int64
}

// Executor holds the packets and copies that are not due yet and carries
// out every verdict through its Output. It is not safe for concurrent use
// (Stats excepted): the driver serializes its calls.
type Executor struct {
	out     Output
	opts    Options
	held    heldQueue
	holding int    // delayed packets in held (the rest are copies)
	seq     uint64 // orders entries with equal deadlines by arrival
	stopped bool
	c       counters
}

// New returns an Executor carrying out verdicts through out.
func New(out Output, opts Options) *Executor {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Executor{out: out, opts: opts}
}

// Carry carries out v on p, received at now: it drops p, lets it through,
// or holds it; copies are scheduled. It reports whether the earliest
// deadline moved earlier, so that a timer waiting for it must wake. p and
// v are not kept. Carry does not allocate unless it holds something.
func (x *Executor) Carry(p *Packet, v *rules.Verdict, now time.Time) (earlier bool) {
	if x.opts.Tap != nil {
		x.opts.Tap.Arrived(p, v, now)
	}
	a := v.Action
	switch {
	case !a.Delivers():
		x.out.Drop(p, v, now)
		return false
	case a.Holds():
		x.c.delayed.Add(1)
		x.holding++
		return x.push(now.Add(v.Hold), p, v, false)
	}
	x.out.Accept(p, v, now)
	if !a.SendsCopies() {
		return false
	}
	x.c.duplicated.Add(1)
	switch {
	case v.Copies == 0:
		return false
	case !p.whole():
		x.c.copiesSkip.Add(uint64(v.Copies))
		x.opts.Log.Warn("duplicate of a packet copied in part: copies not sent (use copy range 0)",
			"id", p.ID, "captured", len(p.Data), "length", p.Len)
		return false
	}
	return x.push(now.Add(v.After), p, v, true)
}

// push holds an entry until at; copies are its copies to send.
func (x *Executor) push(at time.Time, p *Packet, v *rules.Verdict, copies bool) bool {
	x.seq++
	e := &heldEntry{at: at, seq: x.seq, p: *p, v: *v, copies: copies}
	e.p.Data = nil
	if copies || x.opts.KeepHeld {
		e.p.Data = bytes.Clone(p.Data)
	}
	heap.Push(&x.held, e)
	x.c.held.Add(1)
	return x.held[0] == e
}

// Fire carries out, at now, every hold that ends and every copy due by
// now, in deadline order (ties: in the order they were scheduled).
func (x *Executor) Fire(now time.Time) {
	for len(x.held) > 0 && !x.held[0].at.After(now) {
		x.fire(x.pop(), now)
	}
}

// Advance moves a virtual clock to t through every deadline before it:
// each entry due by t is carried out at its own deadline, as Fire at that
// instant would.
func (x *Executor) Advance(t time.Time) {
	for len(x.held) > 0 && !x.held[0].at.After(t) {
		e := x.pop()
		x.fire(e, e.at)
	}
}

// Finish carries out every entry left at its own deadline: the end of a
// replay, whose packets are all delivered.
func (x *Executor) Finish() {
	for len(x.held) > 0 {
		e := x.pop()
		x.fire(e, e.at)
	}
}

func (x *Executor) pop() *heldEntry {
	e := heap.Pop(&x.held).(*heldEntry)
	x.c.held.Add(-1)
	return e
}

func (x *Executor) fire(e *heldEntry, now time.Time) {
	if !e.copies {
		x.release(e, now)
		return
	}
	for i := range e.v.Copies {
		if err := x.out.SendCopy(&e.p, &e.v, now); err != nil {
			if n := x.c.copiesFailed.Add(1); LogWorthy(n) {
				x.opts.Log.Error("send duplicate", "failures", n, "err", err)
			}
			continue
		}
		x.c.copiesSent.Add(1)
		if x.opts.Tap != nil {
			x.opts.Tap.CopySent(&e.p, &e.v, int(i)+1, now)
		}
		x.out.Delivered(&e.v, now)
	}
}

// release lets a held packet through and delivers it.
func (x *Executor) release(e *heldEntry, now time.Time) {
	x.holding--
	x.out.Release(&e.p, &e.v, now)
	x.out.Delivered(&e.v, now)
}

// Stop releases every held packet at now (Release, then Delivered) and
// cancels the copies not yet sent (counted). The driver stops calling
// Carry after it (Stopped).
func (x *Executor) Stop(now time.Time) {
	x.stopped = true
	for len(x.held) > 0 {
		e := x.pop()
		if e.copies {
			x.c.copiesCancelled.Add(uint64(e.v.Copies))
			continue
		}
		x.release(e, now)
	}
}

// Stopped reports whether Stop was called.
func (x *Executor) Stopped() bool { return x.stopped }

// Next returns the earliest deadline, if anything is held.
func (x *Executor) Next() (time.Time, bool) {
	if len(x.held) == 0 {
		return time.Time{}, false
	}
	return x.held[0].at, true
}

// Holding returns how many packets are held (copies not counted): their
// verdicts are still to come.
func (x *Executor) Holding() int { return x.holding }

// Stats returns the executor's counters. It is safe to call from any
// goroutine.
func (x *Executor) Stats() Stats {
	c := &x.c
	return Stats{
		Delayed: c.delayed.Load(), Held: c.held.Load(), Duplicated: c.duplicated.Load(),
		CopiesSent: c.copiesSent.Load(), CopiesFailed: c.copiesFailed.Load(),
		CopiesCancelled: c.copiesCancelled.Load(), CopiesSkipped: c.copiesSkip.Load(),
	}
}

// LogWorthy reports whether the nth occurrence of a repeated problem is
// logged: the 1st, 2nd, 4th, 8th, ...
func LogWorthy(n uint64) bool { return n&(n-1) == 0 }

// heldEntry is a held packet (copies false) or the copies of a duplicated
// one, due at at.
type heldEntry struct {
	at     time.Time
	seq    uint64
	p      Packet
	v      rules.Verdict
	copies bool
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
