// Package tap records what tcpchaos did to packets, in a pcapng file that
// Wireshark reads: each packet as it arrived, with a comment naming the
// fault a rule put on it ("dropped by lose-first-syn", "held 300ms by
// slow-syn-ack"), and each copy of a duplicated packet and each RST of a
// reset as it was sent ("copy 1 of 1 by stale-syn", "RST injected by
// reset-on-fin").
//
// It records every connection, or only the connections a fault touched,
// from their first packet to their last: the packets of a connection no
// fault has touched yet are buffered, within bounds, and written when the
// first fault comes. The executor (internal/execute) shows a Recorder its
// packets through a Tap, on the live path and in the replay alike; on the
// live path an Async writes the file in a goroutine of its own.
package tap

import (
	"bytes"
	"container/list"
	"fmt"
	"sync"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/execute"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Writer writes one frame with its comment ("" for none): a
// *capture.NgWriter. It must not keep f.Data.
type Writer interface {
	Write(f capture.Frame, comment string) error
}

// Default bounds on what is buffered for connections no fault touched yet.
const (
	DefaultMaxPackets = 64
	DefaultMaxBytes   = 16 << 20
	DefaultMaxConns   = 1 << 16
)

// Options configure a Recorder. Zero bounds select their defaults.
type Options struct {
	// All records every connection; otherwise only those a fault touched.
	All bool
	// Link is the link type of the packets' bytes (decode.LinkRaw on the
	// live path, the input's in the replay): RSTs are built for it.
	Link decode.LinkType
	// MaxPackets bounds the packets buffered for one untouched connection:
	// later ones are left out (and counted) until a fault touches it.
	MaxPackets int
	// MaxBytes bounds the bytes buffered for all untouched connections,
	// MaxConns the untouched connections buffered: beyond either, the
	// connection seen least recently is forgotten, its buffered packets
	// with it. A touched connection buffers nothing and is not bounded
	// here: its entry goes when the tracker forgets it (OnGone).
	MaxBytes, MaxConns int
}

// Stats say what a Recorder wrote and what it left out.
type Stats struct {
	// Packets given to the Writer (an Async may drop some); Conns
	// connections a fault touched (not counted with Options.All).
	Packets, Conns uint64
	// LeftOut counts packets of written connections that were not written:
	// they came while the connection's buffer was full.
	LeftOut uint64
	// Forgotten counts untouched connections forgotten under MaxBytes or
	// MaxConns: if a fault touches one later, its earlier packets are
	// missing.
	Forgotten uint64
	// Err is the first write error, or a panic while recording; nothing
	// is written after it.
	Err error
}

// Recorder writes the packets that Taps show it. It is safe for
// concurrent use: each queue has its own Tap, all share the Recorder.
type Recorder struct {
	w    Writer
	opts Options

	mu sync.Mutex
	// touched holds the connections a fault touched, until they are gone.
	touched map[key]struct{}
	// waiting holds the buffers of the untouched connections seen, in lru
	// too, most recently seen first.
	waiting map[key]*list.Element // of *buffer
	lru     list.List
	bytes   int // buffered
	stats   Stats
	rst     []byte // the buffer RSTs are built in
}

// key names a connection: its queue's index and its ConnID there.
type key struct {
	queue int
	conn  uint64
}

// buffer holds the packets of a connection no fault touched yet.
type buffer struct {
	key     key
	frames  []capture.Frame
	bytes   int
	skipped int // packets not buffered: the buffer was full
}

// New returns a Recorder writing to w.
func New(w Writer, opts Options) *Recorder {
	for _, b := range []struct {
		v   *int
		def int
	}{
		{&opts.MaxPackets, DefaultMaxPackets}, {&opts.MaxBytes, DefaultMaxBytes}, {&opts.MaxConns, DefaultMaxConns},
	} {
		if *b.v <= 0 {
			*b.v = b.def
		}
	}
	return &Recorder{w: w, opts: opts, touched: make(map[key]struct{}), waiting: make(map[key]*list.Element)}
}

// Queue returns the Tap of queue i (connection IDs are a queue's own).
func (r *Recorder) Queue(i int) execute.Tap {
	return queueTap{r: r, queue: i}
}

// OnGone returns the statetrack.Config.OnGone of queue i's tracker: a
// connection that left the table is forgotten, its buffered packets with
// it (a later packet of its tuple has another ConnID). Without it the
// entries of touched connections are never freed.
func (r *Recorder) OnGone(i int) func(statetrack.Gone) {
	return func(g statetrack.Gone) {
		k := key{i, g.ConnID}
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.touched, k)
		if e := r.waiting[k]; e != nil {
			r.unbuffer(e)
		}
	}
}

// Stats returns what the Recorder wrote so far.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

type queueTap struct {
	r     *Recorder
	queue int
}

// Arrived records a packet (execute.Tap), and the RSTs a reset sends.
func (t queueTap) Arrived(p *execute.Packet, v *rules.Verdict, now time.Time) {
	r := t.r
	r.mu.Lock()
	defer r.unlock()
	if r.stats.Err != nil {
		return
	}
	f := capture.Frame{Data: p.Data, TS: now, CaptureLen: len(p.Data), OrigLen: p.Len}
	comment, name := "", ""
	if v.Rule >= 0 && (v.Action.Faulty() || v.Dark != 0) {
		name = v.RuleName
		comment = Comment(&v.Decision, name)
	}
	r.arrived(key{t.queue, v.Obs.ConnID}, f, comment)
	if comment == "" {
		return
	}
	rs := v.Resets()
	for i := range rs.N {
		var err error
		r.rst, err = decode.AppendRSTFrame(r.rst[:0], p.Data, r.opts.Link, &rs.Seg[i], &v.Obs.Seg)
		if err == nil {
			r.write(capture.Frame{Data: r.rst, TS: now, CaptureLen: len(r.rst), OrigLen: len(r.rst)}, "RST injected by "+name)
		}
	}
}

// CopySent records a copy of a duplicated packet (execute.Tap): a fault,
// so always written.
func (t queueTap) CopySent(p *execute.Packet, v *rules.Verdict, i int, now time.Time) {
	r := t.r
	r.mu.Lock()
	defer r.unlock()
	if r.stats.Err == nil {
		r.write(capture.Frame{Data: p.Data, TS: now, CaptureLen: len(p.Data), OrigLen: p.Len},
			fmt.Sprintf("copy %d of %d by %s", i, v.Copies, v.RuleName))
	}
}

// unlock, deferred by a Tap call once it holds r.mu, releases it; a panic
// of the call ends the recording (Stats.Err) instead of the queue that
// showed the packet: the live path fails open.
func (r *Recorder) unlock() {
	if p := recover(); p != nil && r.stats.Err == nil {
		r.stats.Err = fmt.Errorf("recording panicked: %v", p)
	}
	r.mu.Unlock()
}

// Comment is what the recording says of a packet that the rule named
// name faulted with d.
func Comment(d *rules.Decision, name string) string {
	a := d.Action
	switch {
	case a.SendsResets():
		return "reset by " + name
	case d.Dark != 0 && d.For > 0:
		return fmt.Sprintf("blackhole %s by %s for %s", d.Dark.Direction(), name, d.For)
	case d.Dark != 0:
		return fmt.Sprintf("blackhole %s by %s", d.Dark.Direction(), name)
	case a.Darkens():
		return "dropped by " + name + " (connection dark)"
	case !a.Delivers():
		return "dropped by " + name
	case a.Holds():
		return fmt.Sprintf("held %s by %s", d.Hold.Round(time.Microsecond), name)
	case a.SendsCopies():
		s := "ies"
		if d.Copies == 1 {
			s = "y"
		}
		return fmt.Sprintf("duplicated by %s (%d cop%s after %s)", name, d.Copies, s, d.After)
	}
	return a.String() + " by " + name
}

// arrived writes f, buffers it, or leaves it out; r.mu is held.
func (r *Recorder) arrived(k key, f capture.Frame, comment string) {
	if _, touched := r.touched[k]; r.opts.All || touched {
		r.write(f, comment)
		return
	}
	if k.conn == 0 { // a packet of no connection
		if comment != "" {
			r.write(f, comment)
		}
		return
	}
	e := r.waiting[k]
	if comment != "" { // the first fault
		r.touched[k] = struct{}{}
		r.stats.Conns++
		if e != nil {
			b := r.unbuffer(e)
			for _, f := range b.frames {
				r.write(f, "")
			}
			if b.skipped > 0 {
				comment += fmt.Sprintf("; %d packets before this one not recorded (buffer of %d packets full)", b.skipped, r.opts.MaxPackets)
				r.stats.LeftOut += uint64(b.skipped)
			}
		}
		r.write(f, comment)
		return
	}
	if e == nil {
		e = r.lru.PushFront(&buffer{key: k})
		r.waiting[k] = e
	} else {
		r.lru.MoveToFront(e)
	}
	b := e.Value.(*buffer)
	if len(b.frames) == r.opts.MaxPackets {
		b.skipped++
		return
	}
	f.Data = bytes.Clone(f.Data)
	b.frames = append(b.frames, f)
	b.bytes += len(f.Data)
	r.bytes += len(f.Data)
	r.bound()
}

// bound forgets the untouched connections seen least recently while more
// bytes or connections are buffered than allowed; the one seen last is
// kept.
func (r *Recorder) bound() {
	for (r.bytes > r.opts.MaxBytes || len(r.waiting) > r.opts.MaxConns) && r.lru.Len() > 1 {
		r.unbuffer(r.lru.Back())
		r.stats.Forgotten++
	}
}

// unbuffer takes the buffer in e out of the Recorder and returns it.
func (r *Recorder) unbuffer(e *list.Element) *buffer {
	b := r.lru.Remove(e).(*buffer)
	delete(r.waiting, b.key)
	r.bytes -= b.bytes
	return b
}

// write writes f unless an earlier write failed; r.mu is held.
func (r *Recorder) write(f capture.Frame, comment string) {
	if r.stats.Err != nil {
		return
	}
	if err := r.w.Write(f, comment); err != nil {
		r.stats.Err = err
		return
	}
	r.stats.Packets++
}
