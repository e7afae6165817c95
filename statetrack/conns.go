package statetrack

import (
	"net/netip"
	"time"
)

// ConnInfo is a snapshot of one tracked connection, as Tracker.Each
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
	// Quiet: the connection's data phase bypasses the tracker (see
	// Tracker.Quiet).
	Quiet bool
}

// Each calls f for every tracked connection, the most recently active
// first and quiet connections last, until f returns false. f must not call
// back into the tracker. Each does not allocate.
func (t *Tracker) Each(f func(ConnInfo) bool) {
	for _, l := range [...]*list{&t.lru, &t.quiet} {
		for i := l.head; i != none; i = t.at(i).link[activityLinks].next {
			if !f(t.info(i)) {
				return
			}
		}
	}
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
