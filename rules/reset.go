package rules

import (
	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

// Endpoints names which endpoints of a connection an action is aimed at.
type Endpoints uint8

// Endpoints.
const (
	// ToClient is the connection's client; ToServer its server.
	ToClient Endpoints = 1 << iota
	ToServer
	// Both is the client and the server.
	Both = ToClient | ToServer
)

// endpointNames are the config's words for Endpoints, by value.
var endpointNames = []string{"", "client", "server", "both"}

// String returns "client", "server" or "both".
func (e Endpoints) String() string {
	if int(e) < len(endpointNames) {
		return endpointNames[e]
	}
	return "none"
}

// Has reports whether s is among e.
func (e Endpoints) Has(s statetrack.Side) bool {
	if s == statetrack.Client {
		return e&ToClient != 0
	}
	return e&ToServer != 0
}

// Resets are the RSTs a reset decision sends instead of the packet: at
// most one per endpoint, each as its receiver accepts it.
type Resets struct {
	Seg [2]statetrack.Segment
	// Exact tells, per RST, whether it carries the exact sequence number
	// its receiver expects: always with window: exact, and for an RST
	// acknowledging a SYN, which has no window to be outside of. One that
	// is not draws a challenge ACK and moves nobody.
	Exact [2]bool
	N     int
}

// resets returns the RSTs to the endpoints to that replace the packet
// seen in o, with the sequence numbers the packet shows each receiver
// expects:
//
//   - to the packet's receiver, as from its sender: the packet's own
//     sequence number, the receiver's next expected one (RFC 5961 §3.2's
//     exact match), one past it for a keepalive probe; to a SYN_SENT client in answer to a SYN-ACK, an RST
//     acknowledging its SYN (RFC 9293 §3.10.7.3). A listener receiving a
//     SYN gets none: it ignores RSTs.
//   - to the packet's sender, as from its receiver: the packet's
//     acknowledgment number, what the sender expects next; to the sender
//     of a SYN, an RST acknowledging it, which refuses the connection
//     (connect fails with ECONNREFUSED).
//
// outside moves each exact sequence number one past, still inside the
// window: a stack following RFC 5961 answers it with a challenge ACK and
// the connection lives on (an RST acknowledging a SYN has no window and
// stays as it is). An RST is never answered with an RST.
func resets(o *statetrack.Observation, to Endpoints, outside bool) Resets {
	var rs Resets
	s := &o.Seg
	if s.Flags&statetrack.RST != 0 {
		return rs
	}
	syn, ack := s.Flags&statetrack.SYN != 0, s.Flags&statetrack.ACK != 0
	for _, side := range [2]statetrack.Side{statetrack.Client, statetrack.Server} {
		if !to.Has(side) {
			continue
		}
		var r statetrack.Segment
		switch {
		case side != o.From && syn && !ack:
			continue
		case side != o.From && syn:
			r = statetrack.Segment{Src: s.Src, Dst: s.Dst, Seq: s.Seq.Add(1), Ack: s.Ack, Flags: statetrack.RST | statetrack.ACK}
		case side != o.From && o.Kind == statetrack.Keepalive:
			// A probe lies one below its receiver's rcv_nxt, where Linux
			// drops an RST unseen (it is before the window).
			r = statetrack.Segment{Src: s.Src, Dst: s.Dst, Seq: s.Seq.Add(1), Flags: statetrack.RST}
		case side != o.From:
			r = statetrack.Segment{Src: s.Src, Dst: s.Dst, Seq: s.Seq, Flags: statetrack.RST}
		case ack:
			r = statetrack.Segment{Src: s.Dst, Dst: s.Src, Seq: s.Ack, Flags: statetrack.RST}
		case syn:
			r = statetrack.Segment{Src: s.Dst, Dst: s.Src, Ack: s.Seq.Add(1), Flags: statetrack.RST | statetrack.ACK}
		default:
			continue
		}
		exact := !outside || r.Flags&statetrack.ACK != 0
		if !exact {
			r.Seq = r.Seq.Add(seqnum.Size(1))
		}
		rs.Seg[rs.N], rs.Exact[rs.N] = r, exact
		rs.N++
	}
	return rs
}
