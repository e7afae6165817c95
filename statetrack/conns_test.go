package statetrack_test

import (
	"time"

	"testing"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestEachSlotSnapshots: each tracked connection's snapshot has its
// endpoints, both states, a connection ID of its own and its last activity.
func TestEachSlotSnapshots(t *testing.T) {
	tr := statetrack.New(statetrack.Config{})
	a := newConn(tr, "198.18.0.1:40000", "198.18.1.1:80")
	b := newConn(tr, "198.18.0.2:40001", "198.18.1.1:80")
	a.handshake(1000, 5000)
	b.send(true, statetrack.SYN, 7000, 0, 0)
	var got []statetrack.ConnInfo
	if _, more := tr.EachSlot(0, 10, func(c statetrack.ConnInfo) { got = append(got, c) }); more || len(got) != 2 {
		t.Fatalf("EachSlot listed %d connections (more: %v), want 2 and no more", len(got), more)
	}
	if got[0].Client != a.c || got[0].Server != a.s || got[0].States != [2]statetrack.State{statetrack.Established, statetrack.Established} {
		t.Errorf("first slot: got %+v, want %v→%v ESTABLISHED/ESTABLISHED", got[0], a.c, a.s)
	}
	if got[1].Client != b.c || got[1].Server != b.s || got[1].States != [2]statetrack.State{statetrack.SynSent, statetrack.SynRcvd} {
		t.Errorf("second slot: got %+v, want %v→%v SYN_SENT/SYN_RCVD", got[1], b.c, b.s)
	}
	if got[0].ConnID == 0 || got[0].ConnID == got[1].ConnID || !got[0].Last.Equal(a.now) {
		t.Errorf("IDs %d, %d and Last %v: want distinct nonzero IDs, Last %v", got[0].ConnID, got[1].ConnID, got[0].Last, a.now)
	}
}

// freedFirstSlot returns a table of three slots whose first is free again:
// a, ESTABLISHED/ESTABLISHED, in slot 1 and b, SYN_SENT/SYN_RCVD, in slot 2.
func freedFirstSlot(t *testing.T) (*statetrack.Tracker, *conn, *conn) {
	t.Helper()
	tr := statetrack.New(statetrack.Config{IdleTimeout: time.Minute})
	gone := newConn(tr, "198.18.0.3:40002", "198.18.1.1:80")
	gone.handshake(3000, 9000) // slot 0, idle from t0 on
	a := newConn(tr, "198.18.0.1:40000", "198.18.1.1:80")
	b := newConn(tr, "198.18.0.2:40001", "198.18.1.1:80")
	a.handshake(1000, 5000)
	b.send(true, statetrack.SYN, 7000, 0, 0)
	a.now, b.now = t0.Add(30*time.Second), t0.Add(30*time.Second)
	a.send(true, statetrack.ACK, 1001, 5001, 0)
	b.send(true, statetrack.SYN, 7000, 0, 0) // a retransmission
	tr.Expire(t0.Add(70 * time.Second))      // the first connection goes, idle for 70 s
	if tr.Len() != 2 {
		t.Fatalf("%d connections tracked, want 2", tr.Len())
	}
	return tr, a, b
}

// TestCountStatesSkipsFreeSlots: connections are counted by state pair,
// in chunks of slots; a removed connection's slot is not counted.
func TestCountStatesSkipsFreeSlots(t *testing.T) {
	tr, _, _ := freedFirstSlot(t)
	var n statetrack.StatePairs
	next, more := tr.CountStates(0, 2, &n)
	if next != 2 || !more {
		t.Fatalf("first chunk: next %d, more %v; want 2, true", next, more)
	}
	if next, more = tr.CountStates(next, 2, &n); next != 3 || more {
		t.Fatalf("second chunk: next %d, more %v; want 3, no more", next, more)
	}
	var want statetrack.StatePairs
	want[statetrack.Established][statetrack.Established] = 1
	want[statetrack.SynSent][statetrack.SynRcvd] = 1
	if n != want {
		t.Errorf("counts %v, want %v", n, want)
	}
	var sum statetrack.StatePairs
	sum.Add(&n)
	sum.Add(&n)
	if sum[statetrack.Established][statetrack.Established] != 2 {
		t.Errorf("Add: %v, want the counts doubled", sum)
	}
}

// TestEachSlotWalksTheTableInChunks: the table is listed a few slots at a
// time (so that a caller can let packets through in between), in slot
// order; a removed connection's slot is skipped.
func TestEachSlotWalksTheTableInChunks(t *testing.T) {
	tr, a, b := freedFirstSlot(t)
	var got []statetrack.ConnInfo
	add := func(ci statetrack.ConnInfo) { got = append(got, ci) }
	next, more := tr.EachSlot(0, 2, add)
	if next != 2 || !more || len(got) != 1 || got[0].Client != a.c {
		t.Fatalf("first chunk: next %d, more %v, listed %+v; want 2, true, %v", next, more, got, a.c)
	}
	if next, more = tr.EachSlot(next, 2, add); next != 3 || more {
		t.Fatalf("second chunk: next %d, more %v; want 3, no more", next, more)
	}
	if len(got) != 2 || got[1].Client != b.c || got[1].States != [2]statetrack.State{statetrack.SynSent, statetrack.SynRcvd} {
		t.Errorf("listed %+v, want %v then %v SYN_SENT/SYN_RCVD", got, a.c, b.c)
	}
}

// TestSetServerPortsForMidstreamPickups: after a reload adds server port
// 8080, a connection of that port picked up mid-stream by a server's
// segment has its server told by the port, not by the packet's direction.
func TestSetServerPortsForMidstreamPickups(t *testing.T) {
	tr := statetrack.New(statetrack.Config{ServerPorts: []uint16{80}})
	tr.SetServerPorts([]uint16{80, 8080})
	k := newConn(tr, "198.18.0.1:40000", "198.18.1.1:8080")
	o := k.send(false, ack, 5000, 1000, 100)
	if o.From != statetrack.Server || o.Client != k.c || o.Server != k.s {
		t.Errorf("mid-stream pickup by the server's data: from %v, client %v, server %v; want the server, %v, %v", o.From, o.Client, o.Server, k.c, k.s)
	}
}
