package rules

import (
	"fmt"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// A blackhole drops, from the packet that matched it on, every packet of
// the connection travelling in its directions (the packet itself too when
// it travels in one), until its For ends: the connection heals. The rules
// decide only the matching packet (Decision.Dark says what it darkens);
// the drivers keep the connection dark: the live path in the kernel, which
// never queues the connection's packets in a dark direction again, and
// the pipeline for what still reaches it (an RST, a packet queued before
// the kernel knew, every packet of an offline replay).

// directionNames are the config's words for a blackhole's directions, in
// the order of directions (the first is none).
var directionNames = []string{"", "both", "to-client", "to-server"}

// directions are the Endpoints each of directionNames names: the
// endpoints the dark packets travel to.
var directions = []Endpoints{0, Both, ToClient, ToServer}

// Direction returns e as a blackhole's direction: "to-client" (the
// packets travelling to the client), "to-server" or "both".
func (e Endpoints) Direction() string {
	for i, d := range directions {
		if d == e && i > 0 {
			return directionNames[i]
		}
	}
	return "none"
}

// ParseDirection parses a blackhole's direction as Direction returns it.
func ParseDirection(s string) (Endpoints, error) {
	for i, n := range directionNames {
		if i > 0 && n == s {
			return directions[i], nil
		}
	}
	return 0, fmt.Errorf("unknown direction %q (want both, to-client or to-server)", s)
}

// darkens returns the decision of a blackhole rule on the packet seen in
// o: dropped when the packet travels in one of the action's directions,
// accepted when it travels the other way (the connection is dark from the
// next packet in a's directions on), and in both cases with Dark and For
// set.
func darkens(d Decision, o *statetrack.Observation, a *Action) Decision {
	d.Dark, d.For = a.Blackhole, a.For
	if !d.Dark.Has(o.From.Other()) {
		d.Action = Accept
	}
	return d
}
