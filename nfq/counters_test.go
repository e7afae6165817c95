package nfq

import "testing"

// TestQueueFullTally: the queues' id sequences are counted past their
// 2^32 wrap (a queue that handed out 2^32 + 100 ids, all received,
// shows id_sequence 100), summed over the queues, and Unseen never
// goes down when a later read finds the queues ahead of the rules.
func TestQueueFullTally(t *testing.T) {
	c := QueueFullCounter{fams: make([]ruleCounter, 1)}
	wrapped := Stats{Received: 1<<32 + 100, Kernel: KernelStats{IDSequence: 100}}
	other := Stats{Received: 5, Kernel: KernelStats{IDSequence: 8}} // 3 not read yet
	got := c.tally([]uint64{1<<32 + 100 + 8 + 7}, []Stats{wrapped, other})
	if want := (QueueFull{RulePackets: 1<<32 + 115, Queued: 1<<32 + 108, Unseen: 7}); got != want {
		t.Errorf("tally past the id wrap = %+v, want %+v", got, want)
	}
	ahead := Stats{Received: 1<<32 + 120, Kernel: KernelStats{IDSequence: 120}}
	if got := c.tally([]uint64{1<<32 + 100 + 8 + 7}, []Stats{ahead, other}); got.Unseen != 7 {
		t.Errorf("tally with the queues ahead of the rules: Unseen %d, want 7 (never down)", got.Unseen)
	}
}

// TestQueueFullTallyZeroed: a family's rule counter zeroed between two
// reads (iptables -Z) is counted on from what it had reached, so what
// passes the full queue after it is still counted; the other family's
// count is not taken twice.
func TestQueueFullTallyZeroed(t *testing.T) {
	c := QueueFullCounter{fams: make([]ruleCounter, 2)}
	queued := func(n uint64) []Stats { return []Stats{{Received: n, Kernel: KernelStats{IDSequence: uint32(n)}}} }
	if got := c.tally([]uint64{30, 10}, queued(25)); got.Unseen != 15 {
		t.Fatalf("first read: %+v, want 15 unseen", got)
	}
	// IPv4's counter zeroed, then 6 more packets at its rule: 2 queued,
	// 4 passed the full queue.
	if got := c.tally([]uint64{6, 10}, queued(27)); got.RulePackets != 46 || got.Unseen != 19 {
		t.Errorf("after IPv4's counter was zeroed: %+v, want 46 at the rules, 19 unseen", got)
	}
	if got := c.tally([]uint64{16, 10}, queued(27)); got.RulePackets != 56 || got.Unseen != 29 {
		t.Errorf("10 more past the full queue: %+v, want 56 at the rules, 29 unseen", got)
	}
}
