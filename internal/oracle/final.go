package oracle

import (
	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Pair is a connection's client and server state.
type Pair struct{ Client, Server statetrack.State }

// Finals returns each connection's (by ConnID) last client and server
// states before it left the table: the states of its last event other
// than its expiry, eviction or replacement (the state events that take it
// out of the table, where the tracker stops following it).
func Finals(evs []events.Event) map[uint64]Pair {
	finals := make(map[uint64]Pair)
	for _, e := range evs {
		if _, gone := e.Reason.Gone(); gone {
			continue
		}
		finals[e.ConnID] = Pair{e.ClientState, e.ServerState}
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
