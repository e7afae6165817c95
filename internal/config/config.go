// Package config holds tcpchaos's configuration as plain, validated values.
// It knows nothing of files or flags: cmd/tcpchaos reads those with viper
// and hands the resulting tree to Decode, which refuses bad input with the
// key path and the reason before anything is installed.
package config

import (
	"net/netip"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Config is a whole, validated tcpchaos configuration.
type Config struct {
	Intercept Intercept
	Tracker   statetrack.Config
	// Seed seeds every random choice (probability, jitter): the same seed
	// and the same traffic give the same decisions. Default 1.
	Seed uint64
	// Rules are tried in order; the first rule that matches decides.
	Rules []Rule
}

// Mode selects where packets are intercepted.
type Mode uint8

// Interception modes.
const (
	// Forward intercepts transit packets on a gateway (FORWARD chain).
	Forward Mode = iota
	// Local intercepts this host's own connections (OUTPUT, and INPUT
	// except loopback, so a loopback connection is seen once per packet).
	Local
)

// String returns "forward" or "local".
func (m Mode) String() string {
	if m == Local {
		return "local"
	}
	return "forward"
}

// Intercept says which packets the kernel hands to tcpchaos.
type Intercept struct {
	// Mode is forward (default) or local.
	Mode Mode
	// Ports are server ports; either direction of their connections is
	// intercepted. Empty means every TCP port.
	Ports []uint16
	// Hosts optionally limits interception to connections with an endpoint
	// in one of these prefixes (IPv4 and IPv6). Empty means any host.
	Hosts []netip.Prefix
	// Queue is the first NFQUEUE number. Default 100.
	Queue uint16
	// Queues is how many queues, Queue to Queue+Queues-1, share the
	// connections (flow-consistent). Default 1.
	Queues uint16
}

// Rule is one fault rule.
type Rule struct {
	// Name labels the rule in events and summaries. Default "rule-N" (N
	// counted from 1).
	Name   string
	Match  Match
	Action Action
	// Probability is the chance, per matching packet, that the action is
	// taken, in [0,1]. Default 1.
	Probability float64
	// Limit caps how many packets the rule acts on over the run; 0 means
	// no limit.
	Limit uint64
}

// Match selects packets. Every field that is set must match; the zero value
// of each field matches anything.
type Match struct {
	// Packets are the kinds to match (any of them).
	Packets []statetrack.Kind
	// Closer, for fin packets, is active or passive.
	Closer statetrack.Closer
	// From restricts the sender to the client or the server.
	From *statetrack.Side
	// Nth matches the nth packet of its kind from its sender (1 = original).
	Nth uint32
	// Retransmission, when set, matches retransmissions (true) or
	// originals (false) only.
	Retransmission *bool
	// States match the sender's state before the packet (the state it sent
	// the packet from).
	States []statetrack.State
	// Ports match the connection's server port.
	Ports []uint16
	// Src and Dst match the packet's source and destination address.
	Src, Dst []netip.Prefix
}

// ActionType is what a rule does to a packet it matches.
type ActionType uint8

// Actions.
const (
	// Accept lets the packet through untouched (a rule that exempts
	// packets from the rules after it).
	Accept ActionType = iota
	// Drop discards the packet.
	Drop
	// Delay holds the packet for Delay ± Jitter, then lets it through.
	Delay
	// Duplicate lets the packet through and sends Copies copies of it
	// After later.
	Duplicate
)

// String returns "accept", "drop", "delay" or "duplicate".
func (a ActionType) String() string {
	switch a {
	case Drop:
		return "drop"
	case Delay:
		return "delay"
	case Duplicate:
		return "duplicate"
	}
	return "accept"
}

// Action is a rule's action and its parameters.
type Action struct {
	Type ActionType
	// Delay and Jitter: the packet is held for Delay plus a uniformly
	// drawn offset in [-Jitter, +Jitter] (never less than zero).
	Delay, Jitter time.Duration
	// Copies is how many copies Duplicate sends (at least 1).
	Copies uint32
	// After is when the copies are sent, counted from the original.
	After time.Duration
}
