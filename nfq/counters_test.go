package nfq

import "testing"

// TestQueueFullTally: the queues' id sequences are counted past their
// 2^32 wrap (a queue that handed out 2^32 + 100 ids, all received,
// shows id_sequence 100), summed over the queues, and Unseen never
// goes down when a later read finds the queues ahead of the rules.
func TestQueueFullTally(t *testing.T) {
	var c QueueFullCounter
	wrapped := Stats{Received: 1<<32 + 100, Kernel: KernelStats{IDSequence: 100}}
	other := Stats{Received: 5, Kernel: KernelStats{IDSequence: 8}} // 3 not read yet
	got := c.tally(1<<32+100+8+7, []Stats{wrapped, other})
	if want := (QueueFull{RulePackets: 1<<32 + 115, Queued: 1<<32 + 108, Unseen: 7}); got != want {
		t.Errorf("tally past the id wrap = %+v, want %+v", got, want)
	}
	ahead := Stats{Received: 1<<32 + 120, Kernel: KernelStats{IDSequence: 120}}
	if got := c.tally(1<<32+100+8+7, []Stats{ahead, other}); got.Unseen != 7 {
		t.Errorf("tally with the queues ahead of the rules: Unseen %d, want 7 (never down)", got.Unseen)
	}
}
