// Package oracle checks the tracker's events against what lies outside it:
// the pairs of endpoint states two real TCP endpoints can be in at once,
// and nf_conntrack, the kernel's own middlebox tracker, watching the same
// packets from the same router (conntrack.go, compare.go). The live tests
// (e2e) and the benchmark suite's conntrack workload (bench) use it.
package oracle

import (
	"fmt"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// The pairs two endpoints of one connection cannot be in at once.
//
// The tracker shows the sender's state as of sending and the receiver's as
// of delivery at the router: its pair describes a world in which every
// packet that passed tcpchaos has arrived and none is in flight beyond it,
// corrected when a sender's ack shows that it had not yet received
// something. Such a world is one two real stacks could be in, so its pair
// obeys the same constraints as two real endpoints' states, whatever is in
// flight. The constraints follow from what each state says about the
// endpoint's own FIN and its peer's:
//
//	state        own FIN sent  peer's FIN received  own FIN acked  closer
//	ESTABLISHED  no            no                   no             -
//	FIN_WAIT_1   yes           no                   no             active
//	FIN_WAIT_2   yes           no                   yes            active
//	CLOSING      yes           yes                  no             active
//	TIME_WAIT    yes           yes                  yes            active
//	CLOSE_WAIT   no            yes                  no             passive
//	LAST_ACK     yes           yes                  no             passive
//
// For endpoints X and Y (checked both ways round):
//
//  1. X received Y's FIN ⇒ Y sent it.
//  2. X's FIN is acked ⇒ Y received it.
//  3. X is a passive closer (it received Y's FIN before sending its own)
//     ⇒ Y sent its FIN before it could receive X's: Y is not passive.
//  4. X is in LAST_ACK (its FIN carries the ack of Y's FIN) and Y received
//     X's FIN ⇒ Y's FIN is acked: Y is not in CLOSING.
//
// That rules out 15 pairs: ESTABLISHED with FIN_WAIT_2, CLOSING,
// TIME_WAIT, CLOSE_WAIT or LAST_ACK; FIN_WAIT_1 with FIN_WAIT_2 or
// TIME_WAIT; FIN_WAIT_2 with FIN_WAIT_2 or TIME_WAIT; CLOSING with
// CLOSE_WAIT or LAST_ACK; TIME_WAIT with CLOSE_WAIT; CLOSE_WAIT with
// CLOSE_WAIT or LAST_ACK; LAST_ACK with LAST_ACK. (The crossing of FINs
// beyond the router, shown as a passive close, gives CLOSE_WAIT or
// LAST_ACK against CLOSING.)
//
// The other states constrain nothing here: CLOSED is also the state after
// an RST, after TIME_WAIT or LAST_ACK ends and before the handshake; LISTEN
// is implicit; and a handshake state may face the state of the tuple's
// previous incarnation (a new SYN_SENT against an old TIME_WAIT).
type finFacts struct {
	closing             bool // the state is one of the table's
	sent, rcvd, acked   bool
	passive, carriesAck bool // carriesAck: the own FIN acks the peer's
}

var facts = map[statetrack.State]finFacts{
	statetrack.Established: {closing: true},
	statetrack.FinWait1:    {closing: true, sent: true},
	statetrack.FinWait2:    {closing: true, sent: true, acked: true},
	statetrack.Closing:     {closing: true, sent: true, rcvd: true},
	statetrack.TimeWait:    {closing: true, sent: true, rcvd: true, acked: true},
	statetrack.CloseWait:   {closing: true, rcvd: true, passive: true},
	statetrack.LastAck:     {closing: true, sent: true, rcvd: true, passive: true, carriesAck: true},
}

// Possible reports whether two endpoints of one connection can be in
// states a and b at once (see the constraints above).
func Possible(a, b statetrack.State) bool {
	return holds(facts[a], facts[b]) && holds(facts[b], facts[a])
}

// holds checks constraints 1–4 with x as X and y as Y.
func holds(x, y finFacts) bool {
	if !x.closing || !y.closing {
		return true
	}
	switch {
	case x.rcvd && !y.sent, // 1
		x.acked && !y.rcvd,                 // 2
		x.passive && y.passive,             // 3
		x.carriesAck && y.rcvd && !y.acked: // 4
		return false
	}
	return true
}

// ImpossiblePairs returns a line for each event whose client and server
// states two real endpoints cannot be in at once (nil when there is none).
func ImpossiblePairs(evs []events.Event) []string {
	var bad []string
	for _, e := range evs {
		if !Possible(e.ClientState, e.ServerState) {
			bad = append(bad, fmt.Sprintf("%s #%d %s %s %s/%s: client %s, server %s",
				e.Time.Format("15:04:05.000000"), e.ConnID, e.Conn(), e.From, kindName(e), e.Closer, e.ClientState, e.ServerState))
		}
	}
	return bad
}

// kindName returns e's kind as the events file writes it: "state" for a
// state event.
func kindName(e events.Event) string {
	if e.IsState() {
		return "state"
	}
	return e.Kind.String()
}
