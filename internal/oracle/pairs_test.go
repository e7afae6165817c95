package oracle

import (
	"testing"

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
	evs := append(script(ab, 1, "server fin CLOSE_WAIT FIN_WAIT_1", "client fin LAST_ACK CLOSING"),
		script(cb, 2, "client fin CLOSING CLOSING")...)
	evs[0].Closer, evs[1].Closer, evs[2].Closer = statetrack.Active, statetrack.Passive, statetrack.Active
	for i := range evs {
		evs[i].Time = t0
	}
	bad := ImpossiblePairs(evs)
	if len(bad) != 1 || bad[0] != "12:00:00.000000 #1 "+ab+" client fin/passive: client LAST_ACK, server CLOSING" {
		t.Errorf("ImpossiblePairs = %q, want the LAST_ACK/CLOSING event only", bad)
	}
}
