package statetrack_test

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// BenchmarkObserveEstablished measures one data segment and its ACK, each
// observed and delivered, on an established connection.
func BenchmarkObserveEstablished(b *testing.B) {
	tr := statetrack.New(statetrack.Config{})
	k := newConn(tr, "198.18.0.1:40000", "198.18.1.1:80")
	k.handshake(100, 300)
	data := statetrack.Segment{Src: k.c, Dst: k.s, Flags: ack | statetrack.PSH, Seq: 101, Ack: 301, Len: 1448}
	reply := statetrack.Segment{Src: k.s, Dst: k.c, Flags: ack, Seq: 301, Ack: 101 + 1448}
	b.ReportAllocs()
	for b.Loop() {
		o := tr.Observe(&data, t0)
		tr.Deliver(&o, t0)
		o = tr.Observe(&reply, t0)
		tr.Deliver(&o, t0)
		data.Seq += 1448
		reply.Ack += 1448
	}
}

// BenchmarkHandshakeAndClose measures a whole connection: handshake, one
// data segment and its ACK, a four-way close; the next iteration's SYN
// replaces the connection in TIME_WAIT.
func BenchmarkHandshakeAndClose(b *testing.B) {
	tr := statetrack.New(statetrack.Config{})
	k := newConn(tr, "198.18.0.1:40000", "198.18.1.1:80")
	b.ReportAllocs()
	for b.Loop() {
		k.now = k.now.Add(time.Millisecond)
		k.handshake(100, 300)
		k.send(true, ack|statetrack.PSH, 101, 301, 100)
		k.send(false, ack, 301, 201, 0)
		k.send(true, finAck, 201, 301, 0)
		k.send(false, ack, 301, 202, 0)
		k.send(false, finAck, 301, 202, 0)
		k.send(true, ack, 202, 302, 0)
	}
}

// BenchmarkMillionConnections fills a tracker with 1,000,000 established
// connections and reports the heap bytes per tracked connection, the
// index's overhead included.
func BenchmarkMillionConnections(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tr := establishedTracker(n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		if tr.Len() != n {
			b.Fatalf("Len = %d, want %d", tr.Len(), n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/conn")
		runtime.KeepAlive(tr)
	}
}

// establishedTracker returns a tracker of n established connections.
func establishedTracker(n int) *statetrack.Tracker {
	server := netip.MustParseAddrPort("198.19.0.1:80")
	tr := statetrack.New(statetrack.Config{MaxConnections: n})
	for i := range n {
		c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)}), uint16(1024+i&0xff))
		k := &conn{tr: tr, c: c, s: server, now: t0}
		k.handshake(100, 300)
	}
	return tr
}

// BenchmarkCountStatesMillion counts a table of 1,000,000 connections by
// state pair, as a metrics scrape does; chunk is one call's share of it
// (4,096 slots, as the metrics read it: how long the queue's packets wait at most).
func BenchmarkCountStatesMillion(b *testing.B) {
	const n = 1_000_000
	tr := establishedTracker(n)
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c statetrack.StatePairs
			if _, more := tr.CountStates(0, n, &c); more || c[statetrack.Established][statetrack.Established] != n {
				b.Fatalf("counted %v, want %d established", c[statetrack.Established][statetrack.Established], n)
			}
		}
	})
	b.Run("chunk", func(b *testing.B) {
		b.ReportAllocs()
		var c statetrack.StatePairs
		from := 0
		for b.Loop() {
			if _, more := tr.CountStates(from, 1<<12, &c); !more {
				from = 0
			} else {
				from += 1 << 14
			}
		}
	})
}
