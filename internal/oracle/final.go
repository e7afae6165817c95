package oracle

import (
	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Pair is a connection's client and server state.
type Pair struct{ Client, Server statetrack.State }

// gone are the reasons of the state events that take a connection out of
// the table, where the tracker stops following it.
var gone = map[string]bool{"time-wait-expired": true, "idle-expired": true, "evicted": true, "replaced": true}

// Finals returns each connection's (by ConnID) last client and server
// states before it left the table: the states of its last event other
// than its expiry, eviction or replacement. Unparsable states read as
// CLOSED (readers of the events file check the spelling).
func Finals(evs []events.Event) map[uint64]Pair {
	finals := make(map[uint64]Pair)
	for _, e := range evs {
		if e.Kind == events.StateKind && gone[e.Reason] {
			continue
		}
		c, _ := statetrack.ParseState(e.ClientState)
		s, _ := statetrack.ParseState(e.ServerState)
		finals[e.ConnID] = Pair{c, s}
	}
	return finals
}

// Count counts the pairs whose client (or server) state is st.
func Count(finals map[uint64]Pair, st statetrack.State) (client, server int) {
	for _, p := range finals {
		if p.Client == st {
			client++
		}
		if p.Server == st {
			server++
		}
	}
	return client, server
}
