//go:build linux

package nfq

import (
	"time"

	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Handler is the packet pipeline (tracker + rules + events):
// internal/pipeline's Pipeline is one. A Queue calls it from one goroutine
// at a time: it need not be safe for concurrent use.
type Handler interface {
	// Handle classifies a decoded segment and decides its fate. For
	// accept the pipeline has already delivered the packet.
	Handle(seg *statetrack.Segment, now time.Time) rules.Verdict
	// Deliver reports that a held packet was released, or that one copy
	// of a duplicated packet was sent.
	Deliver(v *rules.Verdict, now time.Time)
	// Quieted reports that connection connID went quiet: a verdict
	// carrying QuietMark for a packet of it (Verdict.Obs.ConnID) was
	// written to the kernel. A Verdict.Quiet the queue could not honour
	// is reported by Declined instead, or not at all when the queue was
	// opened without Options.Quiet. After the
	// connection's first FIN the kernel honours QuietMark only on that
	// FIN's own verdict, and a verdict without it ends a quiet close
	// (see iptables.go).
	Quieted(connID uint64, now time.Time)
	// Declined reports that the queue will write, or wrote, a
	// Verdict.Quiet of connection connID without QuietMark (the burst
	// did not read the queue dry, a later verdict of the connection in
	// the same burst does not let it go quiet, or the write failed),
	// possibly before more packets of the connection are handled. A
	// Verdict.Quiet is either Quieted or Declined, or superseded by a
	// later one of its connection, once the queue was opened with
	// Options.Quiet.
	Declined(connID uint64)
	// Expire reaps the handler's state over time (the tracker's TIME_WAIT
	// and idle expiry); a running Queue calls it every second.
	Expire(now time.Time)
}
