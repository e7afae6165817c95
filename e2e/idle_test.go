package e2e

import (
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// idleBound is the idle timeout the tests give configs/idle-reset.yaml in
// place of its documented 350 s.
const idleBound = 2 * time.Second

// TestIdleReset: configs/idle-reset.yaml with a 2 s idle bound, in IPv4
// and IPv6. A client reusing one connection gets its first request
// answered; its next one, sent after the connection stayed quiet longer
// than the bound, is dropped and both ends are reset: the client's read
// and the server's fail with ECONNRESET, one RST with the expected
// sequence number reaches each end, ss shows no socket left. A request
// sent before the bound passes.
func TestIdleReset(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		s := newScenarioWith(t, configVariant(t, "idle-reset.yaml", "idle: 350s", "idle: "+idleBound.String()), v6)
		serverErr := s.listenUntilError()
		c, _ := s.dial()
		if err := c.SetDeadline(time.Now().Add(ioTimeout + 2*idleBound)); err != nil {
			t.Fatal(err)
		}
		request(t, c)
		time.Sleep(idleBound / 4)
		request(t, c) // a short pause: below the bound
		time.Sleep(idleBound + idleBound/4)
		s.wantRequestReset(c, serverErr)
		s.waitResets()
		atClient, atServer, evs := s.finish()

		f := wantFault(t, evs, "idle-timeout", rules.Reset, statetrack.Data, statetrack.Client, 3)
		// The gap the rule saw is the one the wire shows before the
		// reset request: from the last packet of the second exchange.
		reqs := pick(atClient, from(s.client), isData)
		if len(reqs) == 3 {
			var last netlabtest.Packet
			for _, p := range atClient {
				if p.Time.Before(reqs[2].Time) {
					last = p
				}
			}
			within(t, "quiet gap before the reset request", reqs[2].Time.Sub(last.Time), idleBound, idleBound*2)
		} else {
			t.Errorf("%d requests from the client, want 3", len(reqs))
		}
		s.wantResetBoth(atClient, atServer, evs, f)
	})
}
