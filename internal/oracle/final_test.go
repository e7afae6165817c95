package oracle

import (
	"testing"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

func TestFinalsSkipExpiry(t *testing.T) {
	evs := append(script(ab, 1, "client fin FIN_WAIT_1 CLOSE_WAIT", "server fin TIME_WAIT LAST_ACK",
		"client final-ack TIME_WAIT CLOSED", "state time-wait-expired CLOSED CLOSED"),
		script(cb, 2, "server fin CLOSE_WAIT FIN_WAIT_1", "client fin CLOSING CLOSING",
			"server final-ack TIME_WAIT CLOSING", "client final-ack TIME_WAIT TIME_WAIT", "state time-wait-expired CLOSED CLOSED")...)
	f := Finals(evs)
	if f[1] != (Pair{statetrack.TimeWait, statetrack.Closed}) || f[2] != (Pair{statetrack.TimeWait, statetrack.TimeWait}) {
		t.Errorf("Finals = %v", f)
	}
	if c, s := Count(f, statetrack.TimeWait); c != 2 || s != 1 {
		t.Errorf("Count(TIME_WAIT) = %d clients, %d servers, want 2 and 1", c, s)
	}
}
