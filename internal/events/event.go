// Package events defines tcpchaos's event records, typed, with their
// stable encoding as one JSON object per line (the README's "Events"), and
// the sinks that write them: synchronously (JSONLines, Faults), or off the
// packet path through a bounded buffer (Async).
package events

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Event is one line of the event stream: a packet as its sender emitted it
// (a packet event), or a state change without a packet being sent (a state
// event: a held packet released, a copy arriving, a connection leaving the
// table). It holds values only, so the packet path passes it by value
// without allocating. The JSON field names and spellings (MarshalJSON) are
// a stable interface: fields may be added, never renamed.
type Event struct {
	// Time is when the event took effect (under replay: the packet's
	// capture time, plus any delay).
	Time time.Time
	// Client and Server are the connection's endpoints as the client sees
	// them, written as "conn": "client:port->server:port" (IPv6 addresses
	// bracketed).
	Client, Server netip.AddrPort
	// ConnID identifies the connection's incarnation within one run.
	ConnID uint64
	// From is the packet's sender. Like Flags, it is not written for a
	// connection leaving the table (HasPacket).
	From statetrack.Side
	// Kind is the packet's kind; zero in a state event, written "state".
	Kind statetrack.Kind
	// Closer is Active or Passive for a fin.
	Closer statetrack.Closer
	// Dark is the directions a blackhole darkens from this packet on, on
	// the event of the packet that matched it (written "blackhole"); the
	// "healed" state event carries it too.
	Dark rules.Endpoints
	// Nth counts packets of this kind from this sender (1 = original).
	Nth uint32
	// Retransmission reports that the segment's sequence space was seen
	// before.
	Retransmission bool
	Seq, Ack       uint32
	// Flags are written as tcpdump spells them ("S", "S.", "F.", "R", ".",
	// "none").
	Flags statetrack.Flags
	// Len is the TCP payload length.
	Len uint32
	// ClientState and ServerState are both endpoints' states after the
	// event.
	ClientState, ServerState statetrack.State
	// Rule is the name of the rule that acted on the packet, "" when none
	// did; Action is what it did (written only with a rule).
	Rule   string
	Action rules.ActionType
	// Delay is how long a delayed packet is held (written for an action
	// that holds); After and Copies describe a duplication (After written
	// for an action that sends copies).
	Delay  time.Duration
	After  time.Duration
	Copies uint32
	// Reason says why a state event happened; NoReason in a packet event.
	Reason Reason
	// Midstream marks the packets of a connection picked up after its
	// handshake (its history before is inferred); NewIncarnation a SYN that
	// replaced a connection on the same tuple.
	Midstream      bool
	NewIncarnation bool
	// Injected marks a packet tcpchaos sent itself (the RSTs of a reset
	// action), not one it intercepted.
	Injected bool
}

// IsState reports whether e is a state event (Reason is set).
func (e *Event) IsState() bool { return e.Reason != NoReason }

// Faulted reports whether a rule acted on e's packet with a fault: an
// action other than accept (a drop, a delay, a duplication).
func (e *Event) Faulted() bool { return e.Rule != "" && e.Action.Faulty() }

// Fired reports whether e is a packet event in which a rule matched the
// packet and acted: not a packet dropped because a blackhole had darkened
// its connection before it (action blackhole without Dark), nor a state
// event.
func (e *Event) Fired() bool {
	return e.Rule != "" && !e.IsState() && (e.Action != rules.Blackhole || e.Dark != 0)
}

// HasPacket reports whether e concerns a packet: a packet event, or a held
// packet released or a copy arriving. A connection leaving the table has
// no sender and no flags, and so has a heal or a quiet handshake.
func (e *Event) HasPacket() bool {
	_, gone := e.Reason.Gone()
	return !gone && e.Reason != Healed && e.Reason != QuietHandshake
}

// Conn returns the connection as "client:port->server:port", as written in
// the "conn" field.
func (e *Event) Conn() string { return e.Client.String() + "->" + e.Server.String() }

// Reason says why a state event happened.
type Reason uint8

// Reasons for a state event. The reasons after Duplicate are a connection
// leaving the table: Gone(g) for each statetrack.GoneReason g, in order.
const (
	// NoReason is the zero value, in packet events.
	NoReason Reason = iota
	// Released: a held packet was delivered.
	Released
	// Duplicate: a copy of a duplicated packet arrived.
	Duplicate
	// QuietHandshake: the connection went quiet after its SYN-ACK, and
	// the server is taken to be ESTABLISHED without its third ACK being
	// seen (no packet: the event has no sender and no flags).
	QuietHandshake
	// Healed: a blackhole's time ran out; the connection's packets pass
	// again (no packet: the event has no sender and no flags).
	Healed
	// goneBase + a statetrack.GoneReason is that reason.
	goneBase = Healed - Reason(statetrack.TimeWaitExpired) + 1
)

// Gone returns the reason of a connection that left the table.
func Gone(g statetrack.GoneReason) Reason { return goneBase + Reason(g) }

// Gone returns the reason why the connection left the table; ok is false
// for a reason that is not one.
func (r Reason) Gone() (g statetrack.GoneReason, ok bool) {
	if r > Healed {
		return statetrack.GoneReason(r - goneBase), true
	}
	return 0, false
}

// String returns the reason as written in the "reason" field: "released",
// "duplicate", "quiet-handshake", "healed", or a statetrack.GoneReason's name ("time-wait-expired",
// ...); "" for NoReason.
func (r Reason) String() string {
	switch r {
	case NoReason:
		return ""
	case Released:
		return "released"
	case Duplicate:
		return "duplicate"
	case QuietHandshake:
		return "quiet-handshake"
	case Healed:
		return "healed"
	}
	g, _ := r.Gone()
	return g.String()
}

// ParseReason parses a reason as String returns it (not NoReason).
func ParseReason(name string) (Reason, error) {
	rs := []Reason{Released, Duplicate, QuietHandshake, Healed}
	for _, g := range statetrack.GoneReasons() {
		rs = append(rs, Gone(g))
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		if name == r.String() {
			return r, nil
		}
		names[i] = r.String()
	}
	return NoReason, fmt.Errorf("unknown reason %q (want one of %s)", name, strings.Join(names, ", "))
}
