package expect

import (
	"slices"

	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Which expectations rest on what a quiet phase leaves unseen (see
// pipeline.QuietPhases). A quiet handshake never shows the third ACK and
// takes the server for ESTABLISHED from the SYN-ACK's verdict on, so it
// shortens SYN_RCVD. A quiet close never shows the ACK of the first FIN
// nor a half-close's data and ACKs, and keeps the closer in FIN_WAIT_1
// until the peer's FIN (FIN_WAIT_2 is never reported while it is
// unseen).
var (
	handshakeKinds  = []statetrack.Kind{statetrack.HandshakeAck}
	handshakeStates = []statetrack.State{statetrack.SynRcvd}
	closeKinds      = []statetrack.Kind{statetrack.FinAck, statetrack.Data, statetrack.Ack, statetrack.Keepalive, statetrack.KeepaliveAck}
	closeStates     = []statetrack.State{statetrack.FinWait1, statetrack.FinWait2, statetrack.CloseWait}
)

// QuietPhases returns the quiet phases that exps let the live path start:
// the quiet handshake unless an expectation names the packet kind
// handshake-ack (follows) or the state SYN_RCVD (follows, never,
// reaches); the quiet close unless one names fin-ack, data, ack,
// keepalive or keepalive-ack (follows) or FIN_WAIT_1, FIN_WAIT_2 or
// CLOSE_WAIT (follows, never, reaches); the data phase past the rules'
// match.nth unless one names data, ack, keepalive or keepalive-ack
// (follows: such rules are there to provoke those packets).
func QuietPhases(exps []Expectation) pipeline.QuietPhases {
	q := pipeline.QuietPhases{Handshake: true, Close: true, PastNth: true}
	for _, x := range exps {
		k, st, ok := names(x.Check)
		if !ok {
			continue
		}
		if slices.Contains(statetrack.DataKinds[:], k) {
			q.PastNth = false
		}
		if slices.Contains(handshakeKinds, k) || slices.Contains(handshakeStates, st) {
			q.Handshake = false
		}
		if slices.Contains(closeKinds, k) || slices.Contains(closeStates, st) {
			q.Close = false
		}
	}
	return q
}

// names returns the packet kind (0: none) and the state (CLOSED: none)
// that check c names; ok is false when it names neither.
func names(c Check) (k statetrack.Kind, st statetrack.State, ok bool) {
	switch c := c.(type) {
	case *Follows:
		if c.Packet != 0 {
			return c.Packet, 0, true
		}
		return 0, c.State, true
	case *Never:
		return 0, c.State, true
	case *Reaches:
		return 0, c.State, true
	}
	return 0, 0, false
}
