package pipeline

import (
	"time"

	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Verdict is the pipeline's decision on one packet, as the live path or the
// replay driver must carry it out.
type Verdict struct {
	// Action is accept, drop, delay or duplicate.
	Action rules.ActionType
	// Hold is how long a delayed packet is held before it is let through.
	Hold time.Duration
	// Copies is how many copies of a duplicated packet to send, After
	// the original.
	Copies uint32
	After  time.Duration
	// Quiet reports that the connection may go quiet: the packet was
	// accepted, both endpoints are ESTABLISHED after it, the rules cannot
	// act on the data phase and the pipeline allows it (AllowQuiet). The
	// live path may then stop queueing the connection's packets until its
	// next SYN, FIN or RST, and calls Pipeline.Quieted when it does.
	Quiet bool
	// Obs is the tracker's observation of the packet; Deliver needs it when
	// a held packet is released or a copy arrives.
	Obs statetrack.Observation
}
