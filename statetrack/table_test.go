package statetrack_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestShardConnIDs: trackers side by side (Config.Shards) hand out
// distinct ConnIDs for their connections, shard 0 the same as a tracker
// alone, and each takes the others' ConnIDs for unknown, even where the
// generation and the slot are those of a live connection of its own.
func TestShardConnIDs(t *testing.T) {
	const tuple, server = "198.18.0.1:40000", "198.18.1.1:80"
	alone := newConn(statetrack.New(statetrack.Config{}), tuple, server).handshake(100, 300).ConnID
	trs := []*statetrack.Tracker{
		statetrack.New(statetrack.Config{MaxConnections: 3, Shard: 0, Shards: 2}),
		statetrack.New(statetrack.Config{MaxConnections: 3, Shard: 1, Shards: 2}),
	}
	ids := make([]uint64, len(trs))
	for i, tr := range trs {
		ids[i] = newConn(tr, tuple, server).handshake(100, 300).ConnID // the same tuple on both: slot 0, generation 1
	}
	if ids[0] != alone || ids[1] != alone|1<<31 {
		t.Errorf("ConnIDs %#x and %#x of shards 0 and 1 of 2, want %#x (as alone) and %#x", ids[0], ids[1], alone, alone|1<<31)
	}
	for i, tr := range trs {
		other := ids[1-i]
		o := statetrack.Observation{ConnID: other, From: statetrack.Client}
		if _, changed := tr.Deliver(&o, t0); changed || tr.QuietClosing(other) || tr.Quiet(other, t0) {
			t.Errorf("shard %d took shard %d's ConnID %#x for its own", i, 1-i, other)
		}
		if info, _, ok := tr.QuietInfo(ids[i], t0); !ok || info.ConnID != ids[i] {
			t.Errorf("shard %d: its own ConnID %#x: found %v, ConnID %#x", i, ids[i], ok, info.ConnID)
		}
		var listed []uint64
		tr.EachSlot(0, 10, func(ci statetrack.ConnInfo) { listed = append(listed, ci.ConnID) })
		if len(listed) != 1 || listed[0] != ids[i] {
			t.Errorf("shard %d lists %#x, want [%#x]", i, listed, ids[i])
		}
	}
	// Slots reused after eviction keep the shard's bits, with a new
	// generation.
	seen := map[uint64]bool{ids[1]: true}
	for port := 40001; port <= 40006; port++ {
		id := newConn(trs[1], fmt.Sprintf("198.18.0.1:%d", port), server).handshake(100, 300).ConnID
		if uint32(id)>>31 != 1 || uint32(id)&^(1<<31) >= 3 || seen[id] {
			t.Errorf("shard 1 of 2, max 3 connections: ConnID %#x (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}

// TestShardBits: a tracker's shard takes the top bits of the ConnID's
// low half that its number of shards needs, and leaves the rest to the
// slot index, which bounds MaxConnections.
func TestShardBits(t *testing.T) {
	for _, c := range []struct{ shards, max int }{
		{0, math.MaxInt32}, {1, math.MaxInt32}, {2, math.MaxInt32}, {3, 1 << 30}, {4, 1 << 30}, {5, 1 << 29}, {4096, 1 << 20}, {65535, 1 << 16},
	} {
		if got := statetrack.MaxConnectionsFor(c.shards); got != c.max {
			t.Errorf("MaxConnectionsFor(%d) = %d, want %d", c.shards, got, c.max)
		}
	}
	// Shard 2 of 3 is 0b10 in the top two bits.
	tr := statetrack.New(statetrack.Config{Shard: 2, Shards: 3})
	if id := newConn(tr, "198.18.0.1:40000", "198.18.1.1:80").handshake(100, 300).ConnID; id != 1<<32|2<<30 {
		t.Errorf("shard 2 of 3: first ConnID %#x, want %#x", id, uint64(1<<32|2<<30))
	}
}

func TestShardConfigPanics(t *testing.T) {
	for _, cfg := range []statetrack.Config{
		{Shard: 2, Shards: 2},
		{Shard: -1, Shards: 2},
		{Shard: 1},
		{Shards: 3, MaxConnections: 1<<30 + 1},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(shard %d of %d, %d connections) did not panic", cfg.Shard, cfg.Shards, cfg.MaxConnections)
				}
			}()
			statetrack.New(cfg)
		}()
	}
	statetrack.New(statetrack.Config{Shard: 2, Shards: 3, MaxConnections: 1 << 30}) // at the bound
}
