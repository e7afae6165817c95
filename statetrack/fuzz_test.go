package statetrack_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

type edge struct{ from, to statetrack.State }

const (
	sClosed   = statetrack.Closed
	sListen   = statetrack.Listen
	sSynSent  = statetrack.SynSent
	sSynRcvd  = statetrack.SynRcvd
	sEstab    = statetrack.Established
	sFinWait1 = statetrack.FinWait1
	sFinWait2 = statetrack.FinWait2
	sClosing  = statetrack.Closing
	sTimeWait = statetrack.TimeWait
	sCloseW   = statetrack.CloseWait
	sLastAck  = statetrack.LastAck
)

var allStates = []statetrack.State{sClosed, sListen, sSynSent, sSynRcvd, sEstab, sFinWait1, sFinWait2, sClosing, sTimeWait, sCloseW, sLastAck}

// The legal edge set (see the package documentation). A sender moves on
// Observe, after a correction of its state as of the send (Before): a
// receiver edge taken back or applied late, or SYN_SENT -> ESTABLISHED when
// it acknowledges the peer's SYN. A receiver moves on Deliver, possibly
// after a move it was found not to have received yet arrives first.
// Staying put is always legal.
var (
	senderEdges = []edge{
		{sClosed, sSynSent}, {sListen, sSynSent}, // SYN
		{sClosed, sSynRcvd}, {sListen, sSynRcvd}, {sSynSent, sSynRcvd}, {sTimeWait, sSynRcvd}, // SYN-ACK
		{sSynRcvd, sFinWait1}, {sEstab, sFinWait1}, // FIN, active
		{sCloseW, sLastAck}, // FIN, passive
	}
	receiverEdges = []edge{
		{sClosed, sSynRcvd}, {sListen, sSynRcvd}, {sSynSent, sSynRcvd}, {sTimeWait, sSynRcvd}, // SYN
		{sSynSent, sEstab}, {sSynRcvd, sEstab}, // SYN-ACK, ACK of the SYN
		{sSynRcvd, sCloseW}, {sEstab, sCloseW}, // FIN
		{sFinWait1, sFinWait2}, {sFinWait1, sClosing}, {sFinWait1, sTimeWait},
		{sFinWait2, sTimeWait}, {sClosing, sTimeWait}, {sLastAck, sClosed},
	}
)

// legalSets returns the corrections allowed on Observe (prev -> Before for
// the sender), the sender edges (Before -> After) and the edges allowed on
// Deliver (for the receiver), RSTs included.
func legalSets() (correct, observe, deliver map[edge]bool) {
	correct, observe, deliver = map[edge]bool{}, map[edge]bool{}, map[edge]bool{}
	one := map[edge]bool{}
	for _, s := range allStates {
		correct[edge{s, s}], observe[edge{s, s}], one[edge{s, s}] = true, true, true
		observe[edge{s, sClosed}] = true // it sends an RST
		if s != sListen {
			one[edge{s, sClosed}] = true // an acceptable RST
		}
	}
	correct[edge{sSynSent, sEstab}] = true
	for _, e := range receiverEdges {
		correct[e], correct[edge{e.to, e.from}], one[e] = true, true, true
	}
	for _, e := range senderEdges {
		observe[e] = true
	}
	for a := range one { // a late arrival, then the packet itself
		for b := range one {
			if a.to == b.from {
				deliver[edge{a.from, b.to}] = true
			}
		}
	}
	return correct, observe, deliver
}

// FuzzTracker feeds arbitrary packet sequences on a few tuples (one a
// self-connect), with drops, delays, duplicates, resets (Forge, Retract),
// quiet connections (Quieting after a delivery, then Quiet or
// QuietDeclined) and clock jumps, and checks that every state change is a
// legal edge, that nothing changes states behind the caller's back, and
// that the table stays bounded.
func FuzzTracker(f *testing.F) {
	// A handshake, data, a four-way close and a clock jump, then garbage.
	f.Add([]byte{0x00, 0x02, 0, 0, 0x04, 0x92, 0, 4, 0x00, 0x90, 1, 4, 0x00, 0x98, 1, 5, 0x04, 0x91, 0, 8, 0x00, 0x90, 2, 8, 0xe0, 0xff, 0, 0})
	f.Add([]byte{0x03, 0x02, 0, 0, 0x03, 0x12, 0, 4, 0x0b, 0x81, 1, 4, 0x13, 0x81, 2, 0, 0xc0, 0, 0, 0, 0x01, 0x84, 0, 0})
	f.Add([]byte(strings.Repeat("\x01\x02\x03\x04\x85\x91\x10\x33", 8)))
	// A quiet handshake taken back by the SYN's retransmission, and one
	// taken back by the SYN-ACK's.
	f.Add([]byte{0x00, 0x02, 0, 0, 0x24, 0x82, 0, 0x04, 0x00, 0x02, 0, 0, 0x04, 0x82, 0, 0x04})
	f.Add([]byte{0x00, 0x02, 0, 0, 0x24, 0x82, 0, 0x04, 0x04, 0x82, 0, 0x04, 0x00, 0x80, 1, 0x04})
	correctOK, observeOK, deliverOK := legalSets()
	tuples := []struct{ c, s netip.AddrPort }{
		{netip.MustParseAddrPort("198.18.0.1:1000"), netip.MustParseAddrPort("198.18.1.1:80")},
		{netip.MustParseAddrPort("198.18.0.2:1000"), netip.MustParseAddrPort("198.18.1.1:80")},
		{netip.MustParseAddrPort("[fd00::1]:1000"), netip.MustParseAddrPort("[fd00::2]:81")},
		{netip.MustParseAddrPort("198.18.0.3:7"), netip.MustParseAddrPort("198.18.0.3:7")},
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		const maxConns = 3
		live := map[uint64][2]statetrack.State{}
		// assumed holds the connections whose quiet handshake took the
		// third ACK as delivered, until their next packet, which may take
		// it back (the server SYN_RCVD again before the packet).
		assumed := map[uint64]bool{}
		checkGone := func(g statetrack.Gone) {
			if prev, ok := live[g.ConnID]; ok && prev != g.Before {
				t.Fatalf("Gone %v: Before %v, last seen %v", g.Reason, g.Before, prev)
			}
			for side, st := range g.Before {
				want := st
				if g.Reason == statetrack.TimeWaitExpired && st == sTimeWait {
					want = sClosed
				}
				if g.After[side] != want {
					t.Fatalf("Gone %v: %v -> %v", g.Reason, g.Before, g.After)
				}
			}
			delete(live, g.ConnID)
		}
		tr := statetrack.New(statetrack.Config{MSL: time.Second, IdleTimeout: 10 * time.Second, MaxConnections: maxConns,
			ServerPorts: []uint16{80}, OnGone: checkGone})
		now := t0
		var held []statetrack.Observation
		deliver := func(o *statetrack.Observation) {
			prev, alive := live[o.ConnID]
			after, changed := tr.Deliver(o, now)
			if _, still := live[o.ConnID]; !alive || !still {
				if changed || after != ([2]statetrack.State{}) {
					t.Fatalf("Deliver to a gone connection: %v %v", after, changed)
				}
				return
			}
			r, s := o.From.Other(), o.From
			if o.Client == o.Server {
				r, s = statetrack.Client, statetrack.Server // one socket: both entries move together
				if after[0] != after[1] {
					t.Fatalf("self-connect with two states %v", after)
				}
			} else if after[s] != prev[s] {
				t.Fatalf("Deliver moved the sender: %v -> %v", prev, after)
			}
			if !deliverOK[edge{prev[r], after[r]}] {
				t.Fatalf("illegal receiver edge %v -> %v for %v %s", prev[r], after[r], o.Kind, o.Seg.Flags)
			}
			if changed != (after[r] != prev[r]) {
				t.Fatalf("Deliver changed=%v for %v -> %v", changed, prev[r], after[r])
			}
			live[o.ConnID] = after
		}
		// reset drops the packet of o and forges the RSTs a reset of both
		// ends sends (exact or not), then takes the packet back: only each
		// RST's receiver may move, and only to CLOSED.
		reset := func(o *statetrack.Observation, exact bool) {
			rsts := []statetrack.Segment{{Src: o.Seg.Src, Dst: o.Seg.Dst, Seq: o.Seg.Seq, Flags: statetrack.RST}}
			if o.Seg.Flags&statetrack.ACK != 0 {
				rsts = append(rsts, statetrack.Segment{Src: o.Seg.Dst, Dst: o.Seg.Src, Seq: o.Seg.Ack, Flags: statetrack.RST})
			}
			for i := range rsts {
				prev, alive := live[o.ConnID]
				f, after := tr.Forge(&rsts[i], now, exact)
				if !alive {
					continue
				}
				if _, still := live[o.ConnID]; !still || f.ConnID != o.ConnID {
					t.Fatalf("Forge on connection %d observed %d", o.ConnID, f.ConnID)
				}
				s, r := f.From, f.From.Other()
				if o.Client == o.Server {
					s = r
				}
				if (s != r && after[s] != prev[s]) || (after[r] != prev[r] && after[r] != sClosed) || (!exact && after != prev) {
					t.Fatalf("Forge (exact %v) from %v: %v -> %v", exact, f.From, prev, after)
				}
				live[o.ConnID] = after
				if rsts[i].Dst == o.Seg.Src && exact {
					tr.Retract(o)
				}
			}
		}
		for len(ops) >= 4 {
			b0, b1, b2, b3 := ops[0], ops[1], ops[2], ops[3]
			ops = ops[4:]
			switch b0 >> 5 {
			case 6:
				if len(held) > 0 {
					deliver(&held[0])
					held = held[1:]
				}
				continue
			case 7:
				now = now.Add(time.Duration(b1) * 50 * time.Millisecond)
				tr.Expire(now)
				continue
			}
			tu := tuples[b0&3]
			seg := statetrack.Segment{Src: tu.c, Dst: tu.s}
			base, peer := seqnum.Value(1000), seqnum.Value(5000)
			if b0&4 != 0 {
				seg.Src, seg.Dst = tu.s, tu.c
				base, peer = peer, base
			}
			seg.Flags = statetrack.Flags(b1) & (statetrack.FIN | statetrack.SYN | statetrack.RST | statetrack.PSH)
			if b1&0x80 != 0 {
				seg.Flags |= statetrack.ACK
			}
			seg.Seq = base + seqnum.Value(int8(b2))
			seg.Ack = peer + seqnum.Value(int8(b3)>>2)
			seg.Len = uint32(b3 & 3)
			o := tr.Observe(&seg, now)
			if o.ConnID != 0 {
				if assumed[o.ConnID] && live[o.ConnID][statetrack.Server] == sEstab && o.Before[statetrack.Server] == sSynRcvd {
					prev := live[o.ConnID]
					prev[statetrack.Server] = sSynRcvd // taken back
					live[o.ConnID] = prev
				}
				delete(assumed, o.ConnID)
				checkObserve(t, &o, live, correctOK, observeOK)
				live[o.ConnID] = o.After
			}
			switch (b0 >> 3) & 3 {
			case 0:
				deliver(&o)
				if b0&0x20 == 0 {
					break
				}
				tr.Quieting(o.ConnID)
				if b1&0x40 != 0 { // the live path declined the quiet verdict
					tr.QuietDeclined(o.ConnID)
					if tr.QuietClosing(o.ConnID) {
						t.Fatalf("connection %d in a quiet close after its verdict was declined", o.ConnID)
					}
					break
				}
				prev, alive := live[o.ConnID]
				info, moved, ok := tr.QuietInfo(o.ConnID, now)
				if ok != alive || (ok && info.ConnID != o.ConnID) {
					t.Fatalf("Quiet on connection %d (live %v): %v, %+v", o.ConnID, alive, ok, info)
				}
				switch {
				case !ok:
				case moved && (prev != [2]statetrack.State{sEstab, sSynRcvd} || info.States != [2]statetrack.State{sEstab, sEstab}):
					t.Fatalf("quiet handshake moved %v -> %v", prev, info.States)
				case !moved && info.States != prev:
					t.Fatalf("Quiet changed %v -> %v", prev, info.States)
				case moved:
					live[o.ConnID], assumed[o.ConnID] = info.States, true
				}
			case 1:
				if b0&0x20 != 0 {
					reset(&o, b2&1 == 0)
				}
			case 2:
				if len(held) < 8 {
					held = append(held, o)
				}
			case 3:
				deliver(&o)
				deliver(&o)
			}
			if tr.Len() > maxConns || tr.Len() != len(live) {
				t.Fatalf("Len %d, %d live, max %d", tr.Len(), len(live), maxConns)
			}
		}
	})
}

// checkObserve checks one Observation against the last known states of
// its connection, the legal corrections and the legal sender edges.
func checkObserve(t *testing.T, o *statetrack.Observation, live map[uint64][2]statetrack.State, correct, legal map[edge]bool) {
	t.Helper()
	for _, st := range append(o.Before[:], o.After[:]...) {
		if strings.HasPrefix(st.String(), "State(") {
			t.Fatalf("invalid state %v", st)
		}
	}
	if o.Kind < statetrack.Syn || o.Kind > statetrack.Ack || o.Nth == 0 {
		t.Fatalf("kind %v nth %d", o.Kind, o.Nth)
	}
	s, r := o.From, o.From.Other()
	if o.Client == o.Server {
		r = s
	}
	prev, ok := live[o.ConnID]
	if ok == o.NewConn || (ok && r != s && prev[r] != o.Before[r]) {
		t.Fatalf("Observe: NewConn=%v, Before %v, last seen %v (known %v)", o.NewConn, o.Before, prev, ok)
	}
	if ok && !correct[edge{prev[s], o.Before[s]}] {
		t.Fatalf("illegal correction %v -> %v for %v %s", prev[s], o.Before[s], o.Kind, o.Seg.Flags)
	}
	if r != s && o.After[r] != o.Before[r] {
		t.Fatalf("Observe moved the receiver: %v -> %v", o.Before, o.After)
	}
	if !legal[edge{o.Before[s], o.After[s]}] {
		t.Fatalf("illegal sender edge %v -> %v for %v %s", o.Before[s], o.After[s], o.Kind, o.Seg.Flags)
	}
}
