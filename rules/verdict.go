package rules

import "github.com/tcpchaos/tcpchaos/statetrack"

// Verdict is the decision on one observed packet as a driver (the live
// queue, the offline replay) carries it out: what the rules decided, the
// observation that the receiver's state moves by when the packet or a copy
// of it is delivered later, and whether the connection may go quiet.
type Verdict struct {
	Decision
	// Quiet reports that the packet's connection may go quiet: the packet
	// was accepted, the rules cannot act on the data phase (Set.Quietable)
	// and both endpoints are ESTABLISHED after it, or it is a SYN-ACK that
	// left the client ESTABLISHED and the server SYN_RCVD (a quiet
	// handshake, Set.QuietHandshake), or a connection's first FIN (a quiet
	// close, Set.QuietClose). A live path that lets quiet connections
	// bypass the queue may then stop queueing the connection's packets
	// without SYN, FIN or RST (after a first FIN: until the second FIN or
	// an RST); one that does not ignores it.
	Quiet bool
	// Closing reports, with Quiet, that the verdict is one of a quiet
	// close: that of the connection's first FIN, or of a packet queued
	// behind it (statetrack.Tracker.QuietClosing). After a first FIN the
	// kernel takes the quiet bit from that FIN's verdict only, and a
	// later verdict of the connection without the bit wakes the close: a
	// live path must not leave the bit off this verdict because a later
	// one of the connection carries it.
	Closing bool
	// Obs is the tracker's observation of the packet.
	Obs statetrack.Observation
}

// Resets returns the RSTs that a reset verdict sends in the packet's
// stead, as the packet seen in Obs shows their receivers expect them
// (none for any other action, nor when the packet shows no endpoint to
// reset, e.g. an RST).
func (v *Verdict) Resets() Resets {
	if !v.Action.SendsResets() {
		return Resets{}
	}
	return resets(&v.Obs, v.Reset, v.OutsideWindow)
}
