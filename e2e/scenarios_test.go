package e2e

import (
	"testing"
	"time"
)

// TestLostFirstSyn: configs/lost-first-syn.yaml. The client's SYN crosses
// the client side twice (same sequence number, the retransmission after
// the 1 s initial RTO) and the server side once; connect() takes about
// 1 s; the events show syn nth 1 dropped by the rule and nth 2 passed.
func TestLostFirstSyn(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		s := newScenario(t, "lost-first-syn.yaml", v6)
		s.listen(pingPong(0))
		c, took := s.dial()
		request(t, c)
		c.Close()
		if !s.toServer.WaitFor(ioTimeout, atLeast(1, from(s.server), isFin)) {
			t.Errorf("no FIN from the server")
		}
		up, down, evs := s.finish()

		within(t, "connect()", took, 900*time.Millisecond, 3*time.Second)
		gaps := sameSegment(t, "client SYNs upstream", pick(up, from(s.client), isSyn), 2, up)
		if len(gaps) == 1 {
			within(t, "SYN retransmission gap", gaps[0], 900*time.Millisecond, 3*time.Second)
		}
		sameSegment(t, "client SYNs downstream", pick(down, from(s.client), isSyn), 1, down)

		f := wantFault(t, evs, "lose-first-syn", "drop", "syn", "client", 1)
		if syns := pick(up, from(s.client), isSyn); len(syns) > 0 && f.Seq != uint32(syns[0].Seq) {
			t.Errorf("dropped syn seq %d, want %d", f.Seq, uint32(syns[0].Seq))
		}
		if e := packetEvents(evs, "syn", "client"); len(e) != 2 || e[1].Nth != 2 || e[1].Action != "" {
			t.Errorf("want syn nth 1 dropped then nth 2 passed, got:\n%s", dumpEvents(e))
		}
	})
}
