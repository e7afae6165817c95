// Package trail keeps, per tracked connection, its recent events and its
// counts of packets by kind and of faults, for a control client's
// `conns` and `timeline`. It sits on the event writer's side of the
// stream (an events.Writer), never on the packet path. Memory is bounded
// twice: a connection keeps its last Events events (a ring), and at most
// Conns connections are kept (the oldest seen first is forgotten first);
// a connection's trail is dropped when the tracker forgets it (its gone
// event).
package trail

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Default bounds of a Recorder.
const (
	// DefaultEvents is how many events a connection's ring keeps: a
	// handshake, a close and their retransmissions, or the last part of a
	// longer history.
	DefaultEvents = 64
	// DefaultConns is how many connections are kept: with DefaultEvents,
	// at most about 25 MiB of events.
	DefaultConns = 2048
)

// Summary is what a connection's trail counts.
type Summary struct {
	// Client and Server are the connection's endpoints, as in its events.
	Client, Server netip.AddrPort
	// First is the time of the connection's first event recorded (the
	// ring may have dropped it since).
	First time.Time
	// Packets counts the connection's packet events by kind (indexed by
	// statetrack.Kind), injected RSTs included.
	Packets [statetrack.Ack + 1]uint64
	// Faults counts packets a rule dropped, delayed or duplicated.
	Faults uint64
	// Events is how many events the connection had; the ring keeps the
	// last Recorder bound of them.
	Events uint64
}

// conn is one connection's trail.
type conn struct {
	Summary
	ring []events.Event // the last events, ring[next:] then ring[:next] once full
	next int
	elem *list.Element // in Recorder.order
}

// Recorder keeps the trails. It is safe for concurrent use: the event
// writer emits, control requests read.
type Recorder struct {
	perConn, maxConns int

	mu      sync.Mutex
	conns   map[uint64]*conn
	order   list.List // of connection IDs, the oldest first
	evicted uint64
}

// New returns a Recorder keeping events events per connection for up to
// conns connections (DefaultEvents and DefaultConns when not positive).
func New(events, conns int) *Recorder {
	if events <= 0 {
		events = DefaultEvents
	}
	if conns <= 0 {
		conns = DefaultConns
	}
	return &Recorder{perConn: events, maxConns: conns, conns: make(map[uint64]*conn)}
}

// Emit records e in its connection's trail; a connection's gone event
// drops the trail.
func (r *Recorder) Emit(e events.Event) {
	if e.ConnID == 0 {
		return // not of a tracked connection
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.conns[e.ConnID]
	if _, gone := e.Reason.Gone(); gone {
		if c != nil {
			r.drop(e.ConnID, c)
		}
		return
	}
	if c == nil {
		if len(r.conns) >= r.maxConns {
			oldest := r.order.Front().Value.(uint64)
			r.drop(oldest, r.conns[oldest])
			r.evicted++
		}
		// The ring starts at 4 events and grows to perConn: most
		// connections of a SYN flood have 2 or 3 events before they are
		// evicted, and a ring of 16 for each (2.8 KB) was 94 % of what
		// tcpchaos allocated in one.
		c = &conn{Summary: Summary{Client: e.Client, Server: e.Server, First: e.Time}, ring: make([]events.Event, 0, min(r.perConn, 4))}
		c.elem = r.order.PushBack(e.ConnID)
		r.conns[e.ConnID] = c
	}
	c.Events++
	if !e.IsState() && int(e.Kind) < len(c.Packets) {
		c.Packets[e.Kind]++
	}
	if e.Faulted() {
		c.Faults++
	}
	if len(c.ring) < r.perConn {
		c.ring = append(c.ring, e)
		return
	}
	c.ring[c.next] = e
	c.next = (c.next + 1) % r.perConn
}

func (r *Recorder) drop(id uint64, c *conn) {
	r.order.Remove(c.elem)
	delete(r.conns, id)
}

// Flush does nothing: a Recorder writes nowhere.
func (r *Recorder) Flush() error { return nil }

// Summary returns the counts of the connection id, and reports whether
// its trail is kept.
func (r *Recorder) Summary(id uint64) (Summary, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.conns[id]
	if !ok {
		return Summary{}, false
	}
	return c.Summary, true
}

// Events returns the kept events of the connection id, oldest first, and
// reports whether its trail is kept.
func (r *Recorder) Events(id uint64) ([]events.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.conns[id]
	if !ok {
		return nil, false
	}
	return append(append([]events.Event(nil), c.ring[c.next:]...), c.ring[:c.next]...), true
}

// Len returns how many connections' trails are kept.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// Evicted returns how many trails were forgotten to keep within the bound
// on connections (not counting the connections the tracker forgot).
func (r *Recorder) Evicted() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.evicted
}
