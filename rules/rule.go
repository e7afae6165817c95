package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// DefaultProbability is a rule's probability when none is given: it acts
// on every packet it matches.
const DefaultProbability = 1.0

// Rule is one fault rule.
type Rule struct {
	// Name labels the rule in events and summaries. Default DefaultName.
	Name   string
	Match  Match
	Action Action
	// Probability is the chance, per matching packet, that the action is
	// taken, in [0,1]. Default DefaultProbability.
	Probability float64
	// Limit caps how many packets the rule acts on over the run; 0 means
	// no limit.
	Limit uint64
}

// DefaultName is the name of the ith rule (counted from 0) when it has
// none: "rule-1" for the first.
func DefaultName(i int) string { return fmt.Sprintf("rule-%d", i+1) }

// CheckProbability returns why p cannot be a rule's probability, or nil.
func CheckProbability(p float64) error {
	if p < 0 || p > 1 {
		return fmt.Errorf("%v is outside [0,1]", p)
	}
	return nil
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
	// Idle, when above zero, matches a packet that ends a gap of at least
	// Idle without packets on its connection (Observation.Idle), such as
	// the segment a NAT or load balancer answers with an RST once it has
	// forgotten an idle flow. A Set with such a rule lets no connection go
	// quiet (Set.Quietable): a quiet connection's data flows unseen, so
	// its gaps cannot be told.
	Idle time.Duration
}

// CheckCloser returns why m's closer can select nothing, or nil: only fin
// packets have a closer.
func (m Match) CheckCloser() error {
	if m.Closer != statetrack.NoCloser && len(m.Packets) > 0 && !slices.Contains(m.Packets, statetrack.Fin) {
		return errors.New("only fin packets have a closer, and packet does not include fin")
	}
	return nil
}
