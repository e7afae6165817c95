//go:build linux

package nfq

import (
	"errors"
	"fmt"
	"sync"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netns"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// Packets that find a queue full pass unseen and uncounted: with the
// queue's fail-open flag, the kernel (__nfqnl_enqueue_packet) lets a
// packet through when queue_total has reached the queue's maximum length,
// before it gives the packet an id, so neither id_sequence nor any drop
// column of /proc/net/netfilter/nfnetlink_queue shows it
// (Stats.Unreceived counts only the packets that had an id and found the
// socket full). The NFQUEUE rule's packet counter does count it: every
// packet that reached the rule was either queued (and had an id) or
// passed so. The difference between the rules' counters and the queues'
// id sequences is what passed a full queue.
//
// The rule counts a packet before the target queues it, so a read of the
// counters followed by a read of the id sequences never counts more than
// passed (packets that arrive between the two reads make it count
// fewer); the id sequences count from the queues' binding, which comes
// before the rules (nfq.Open before Install), so they hold nothing older.
// They wrap at 2^32 packets: each is counted on from the packets the
// queue received (Stats.Received + Stats.Unreceived). A rule counter
// that goes back (zeroed by iptables -Z) is counted on from what the last
// read found: the packets between that read and the zeroing are lost,
// so the figure still never counts more than passed.

// QueueFull is what the kernel let through unseen because a queue was
// full.
type QueueFull struct {
	// RulePackets is how many packets reached the NFQUEUE rules, over both
	// address families; Queued how many packets the kernel queued (the
	// queues' id sequences added up).
	RulePackets, Queued uint64
	// Unseen is RulePackets - Queued: the packets that passed a full
	// queue. It never goes below 0 nor below an earlier read's.
	Unseen uint64
}

// QueueFullCounter reads the interception's NFQUEUE rule counters and the
// queues' id sequences, from any goroutine: it runs iptables in the
// network namespace it was made in.
type QueueFullCounter struct {
	queues []*Queue
	fams   []ruleCounter // their counts guarded by mu
	ns     netlab.NS     // the namespace of the rules (Path: its open descriptor's)

	mu     sync.Mutex // serializes reads, guards what follows
	high   uint64     // the highest Unseen so far
	closed bool       // Close released ns
}

// errCounterClosed: Read after Close.
var errCounterClosed = errors.New("queue-full count: the counter is closed")

// ruleCounter is one family's iptables, and its NFQUEUE rule's count:
// last is the count the last read found, zeroed what the counter had
// reached each time it was found zeroed (iptables -Z) since, added up.
type ruleCounter struct {
	ipt          *iptables.IPTables
	binary       string
	last, zeroed uint64
}

// QueueFullCounter returns a counter of what passes the queues unseen
// when they are full; queues are the queues the interception feeds. Call
// it in the namespace of Install (the calling thread's is kept for the
// reads); Close releases it.
func (in *Interception) QueueFullCounter(queues []*Queue) (*QueueFullCounter, error) {
	h, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("queue-full counter: open the current network namespace: %w", err)
	}
	c := &QueueFullCounter{queues: queues, ns: netlab.NS{Path: fmt.Sprintf("/proc/self/fd/%d", h), Handle: h}}
	for _, f := range in.families {
		c.fams = append(c.fams, ruleCounter{ipt: f.ipt, binary: f.plan.binary})
	}
	return c, nil
}

// Close releases the counter's namespace handle; a Read after it fails.
func (c *QueueFullCounter) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.ns.Handle.Close()
}

// Read reads the NFQUEUE rules' counters, then the queues' id sequences
// (see above for why in that order). It runs one iptables command per
// address family, each waiting at most iptablesWait seconds for the
// xtables lock; reads are serialized. An error (the rules are gone, a
// queue's kernel line is missing) leaves the figures unknown.
func (c *QueueFullCounter) Read() (QueueFull, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return QueueFull{}, errCounterClosed
	}
	var rulePackets []uint64
	err := c.ns.Do(func() (err error) {
		rulePackets, err = c.rulePackets()
		return err
	})
	if err != nil {
		return QueueFull{}, fmt.Errorf("queue-full count: %w", err)
	}
	stats := make([]Stats, len(c.queues))
	for i, q := range c.queues {
		if stats[i] = q.Stats(); stats[i].KernelErr != nil {
			return QueueFull{}, fmt.Errorf("queue-full count: queue %d: %w", q.opts.Queue, stats[i].KernelErr)
		}
	}
	return c.tally(rulePackets, stats), nil
}

// tally works out what passed the full queues from the rules' packet
// counts (one per family, in c.fams' order) and the queues' stats,
// keeping Unseen at its highest; c.mu is held.
func (c *QueueFullCounter) tally(rulePackets []uint64, stats []Stats) QueueFull {
	var qf QueueFull
	for i, n := range rulePackets {
		f := &c.fams[i]
		if n < f.last { // zeroed since the last read: count on from there
			f.zeroed += f.last
		}
		f.last = n
		qf.RulePackets += f.zeroed + n
	}
	for _, s := range stats {
		qf.Queued += s.Queued() // id_sequence, unwrapped
	}
	if qf.RulePackets > qf.Queued {
		c.high = max(c.high, qf.RulePackets-qf.Queued)
	}
	qf.Unseen = c.high
	return qf
}

// rulePackets reads the packet counters of the NFQUEUE rules of every
// family, in the calling thread's namespace: one count per family.
func (c *QueueFullCounter) rulePackets() ([]uint64, error) {
	n := make([]uint64, len(c.fams))
	var errs []error
	for i, f := range c.fams {
		stats, err := f.ipt.StructuredStats(Table, chainQueue)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: read the counters of chain %s: %w", f.binary, chainQueue, err))
			continue
		}
		for _, st := range stats {
			if st.Target == "NFQUEUE" {
				n[i] += st.Packets
			}
		}
	}
	return n, errors.Join(errs...)
}
