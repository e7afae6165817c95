package statetrack

import (
	"net/netip"
	"time"
)

// ConnInfo is a snapshot of one tracked connection, as Tracker.EachSlot
// reports it.
type ConnInfo struct {
	// ConnID is the ID the connection's observations and events carry.
	ConnID uint64
	// Client and Server are the endpoints, as the tracker assigned them.
	Client, Server netip.AddrPort
	// States holds both endpoints' states, indexed by Side.
	States [2]State
	// Last is when the tracker last observed or delivered a packet of the
	// connection.
	Last time.Time
	// Midstream: the connection was picked up after its handshake.
	Midstream bool
	// Quiet: the connection's data phase (or third ACK, or close) bypasses
	// the tracker (see Tracker.Quiet).
	Quiet bool
}

// EachSlot calls f for the tracked connections among the table's slots
// from, from+1, … from+max-1, in slot order, and returns the slot to go on
// from and whether any is left: like CountStates, it lists the whole table
// in several calls with packets observed in between (a connection created
// or removed meanwhile is listed once or not at all), so that no call holds
// the caller for the whole table. f must not call back into the tracker.
func (t *Tracker) EachSlot(from, max int, f func(ConnInfo)) (next int, more bool) {
	return t.slots(from, max, func(i int32, _ *conn) { f(t.info(i)) })
}

// slots calls f for each slot in use among from, from+1, … from+max-1,
// and returns the slot to go on from and whether any is left: the walk
// that EachSlot and CountStates share.
func (t *Tracker) slots(from, max int, f func(i int32, c *conn)) (next int, more bool) {
	end := min(from+max, int(t.used))
	for i := from; i < end; i++ {
		if c := t.at(int32(i)); c.flags&inUse != 0 {
			f(int32(i), c)
		}
	}
	return end, end < int(t.used)
}

// info returns slot i's snapshot.
func (t *Tracker) info(i int32) ConnInfo {
	c := t.at(i)
	client, server := c.clientServer()
	return ConnInfo{
		ConnID:    t.id(i),
		Client:    client,
		Server:    server,
		States:    c.states(),
		Last:      time.Unix(0, c.last),
		Midstream: c.flags&midstream != 0,
		Quiet:     c.flags&quiet != 0,
	}
}

// StatePairs counts connections by their endpoints' states, indexed by
// the client's state, then the server's.
type StatePairs [NumStates][NumStates]int

// Add adds o's counts to n.
func (n *StatePairs) Add(o *StatePairs) {
	for c := range n {
		for s := range n[c] {
			n[c][s] += o[c][s]
		}
	}
}

// CountStates adds to n the tracked connections among the table's slots
// from, from+1, … from+max-1, and returns the slot to go on from and
// whether any is left. Counting the whole table in several calls, with
// packets observed in between, counts a connection created or removed
// meanwhile once or not at all; one call counts its slots exactly. It
// reads the slab in order, without the lists: a million connections take
// milliseconds.
func (t *Tracker) CountStates(from, max int, n *StatePairs) (next int, more bool) {
	return t.slots(from, max, func(_ int32, c *conn) {
		s := c.states()
		n[s[Client]][s[Server]]++
	})
}
