package oracle

import (
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestPossible pins the constraints of pairs.go to the 15 pairs its doc
// lists, both ways round, and every other pair to possible.
func TestPossible(t *testing.T) {
	const (
		es = statetrack.Established
		f1 = statetrack.FinWait1
		f2 = statetrack.FinWait2
		cl = statetrack.Closing
		tw = statetrack.TimeWait
		cw = statetrack.CloseWait
		la = statetrack.LastAck
	)
	impossible := map[[2]statetrack.State]bool{}
	for _, p := range [][2]statetrack.State{
		{es, f2}, {es, cl}, {es, tw}, {es, cw}, {es, la},
		{f1, f2}, {f1, tw}, {f2, f2}, {f2, tw},
		{cl, cw}, {cl, la}, {tw, cw}, {cw, cw}, {cw, la}, {la, la},
	} {
		impossible[p], impossible[[2]statetrack.State{p[1], p[0]}] = true, true
	}
	for a := statetrack.Closed; a <= statetrack.LastAck; a++ {
		for b := statetrack.Closed; b <= statetrack.LastAck; b++ {
			if got, want := Possible(a, b), !impossible[[2]statetrack.State{a, b}]; got != want {
				t.Errorf("Possible(%s, %s) = %v, want %v", a, b, got, want)
			}
		}
	}
}

func TestImpossiblePairs(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	evs := []events.Event{
		{Time: at, ConnID: 1, Conn: "a->b", From: "server", Kind: "fin", Closer: "active", ClientState: "CLOSE_WAIT", ServerState: "FIN_WAIT_1"},
		{Time: at, ConnID: 1, Conn: "a->b", From: "client", Kind: "fin", Closer: "passive", ClientState: "LAST_ACK", ServerState: "CLOSING"},
		{Time: at, ConnID: 2, Conn: "c->b", From: "client", Kind: "fin", Closer: "active", ClientState: "CLOSING", ServerState: "CLOSING"},
	}
	bad := ImpossiblePairs(evs)
	if len(bad) != 1 || bad[0] != "12:00:00.000000 #1 a->b client fin/passive: client LAST_ACK, server CLOSING" {
		t.Errorf("ImpossiblePairs = %q, want the LAST_ACK/CLOSING event only", bad)
	}
}
