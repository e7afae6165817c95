package nfq

import "net/netip"

// This file builds on every platform: a config names what to intercept
// (and `tcpchaos validate` checks it) where nothing can be intercepted.

// Defaults of an Intercept.
const (
	DefaultQueue  = 100
	DefaultQueues = 1
)

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
	// Queue is the first NFQUEUE number. Default DefaultQueue.
	Queue uint16
	// Queues is how many queues, Queue to Queue+Queues-1, share the
	// connections (flow-consistent). Default DefaultQueues; 0 counts as 1.
	Queues uint16
	// QueueLength is how many packets each queue keeps waiting for a
	// verdict before the kernel lets more pass unseen (Options.MaxQueueLen;
	// 0: the kernel's default, 1024).
	QueueLength uint32
}

// DefaultIntercept returns the Intercept of a config that names none:
// forward mode, every port and host, queue DefaultQueue, DefaultQueues
// queues.
func DefaultIntercept() Intercept {
	return Intercept{Mode: Forward, Queue: DefaultQueue, Queues: DefaultQueues}
}

// LastQueue returns the number of the last queue, Queue+Queues-1, which
// must not exceed 65535.
func (in Intercept) LastQueue() int { return int(in.Queue) + int(max(in.Queues, 1)) - 1 }
