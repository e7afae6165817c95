package statetrack_test

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// conn is a test helper driving one tuple through a tracker.
type conn struct {
	tr   *statetrack.Tracker
	c, s netip.AddrPort
	now  time.Time
}

func newConn(tr *statetrack.Tracker, c, s string) *conn {
	return &conn{tr: tr, c: netip.MustParseAddrPort(c), s: netip.MustParseAddrPort(s), now: t0}
}

// send observes and delivers one packet, from the client if fromClient.
func (k *conn) send(fromClient bool, f statetrack.Flags, seq, ack seqnum.Value, n uint32) statetrack.Observation {
	seg := statetrack.Segment{Src: k.c, Dst: k.s, Flags: f, Seq: seq, Ack: ack, Len: n}
	if !fromClient {
		seg.Src, seg.Dst = k.s, k.c
	}
	o := k.tr.Observe(&seg, k.now)
	k.tr.Deliver(&o, k.now)
	return o
}

// handshake runs SYN, SYN-ACK, ACK with client ISN ci and server ISN si.
func (k *conn) handshake(ci, si seqnum.Value) statetrack.Observation {
	k.send(true, statetrack.SYN, ci, 0, 0)
	k.send(false, statetrack.SYN|statetrack.ACK, si, ci+1, 0)
	return k.send(true, statetrack.ACK, ci+1, si+1, 0)
}

const (
	ack    = statetrack.ACK
	finAck = statetrack.FIN | statetrack.ACK
)

func TestEvictionOrderAndCounters(t *testing.T) {
	var gone []statetrack.Gone
	tr := statetrack.New(statetrack.Config{MaxConnections: 3, OnGone: func(g statetrack.Gone) { gone = append(gone, g) }})
	var conns []*conn
	for i, port := range []string{"1", "2", "3"} {
		k := newConn(tr, "198.18.0.1:4000"+port, "198.18.1.1:80")
		k.now = t0.Add(time.Duration(i) * time.Second)
		k.handshake(100, 300)
		conns = append(conns, k)
	}
	// Activity on the oldest makes the second the least recently active.
	conns[0].now = t0.Add(10 * time.Second)
	conns[0].send(true, ack, 101, 301, 10)
	for i, port := range []string{"4", "5"} {
		k := newConn(tr, "198.18.0.1:4000"+port, "198.18.1.1:80")
		k.now = t0.Add(time.Duration(20+i) * time.Second)
		k.handshake(100, 300)
	}
	if tr.Len() != 3 {
		t.Errorf("Len = %d, want 3", tr.Len())
	}
	if st := tr.Stats(); st.Evicted != 2 || st.Connections != 5 {
		t.Errorf("Stats = %+v, want 2 evicted of 5", st)
	}
	if len(gone) != 2 {
		t.Fatalf("got %d Gone, want 2", len(gone))
	}
	for i, want := range []*conn{conns[1], conns[2]} {
		g := gone[i]
		if g.Reason != statetrack.Evicted || g.Client != want.c || g.Server != want.s {
			t.Errorf("Gone[%d] = %v %v->%v, want evicted %v->%v", i, g.Reason, g.Client, g.Server, want.c, want.s)
		}
		if g.After != g.Before || g.Before != [2]statetrack.State{statetrack.Established, statetrack.Established} {
			t.Errorf("Gone[%d] states %v -> %v, want ESTABLISHED both, unchanged", i, g.Before, g.After)
		}
	}
}

func TestConnIDAcrossIncarnations(t *testing.T) {
	tr := statetrack.New(statetrack.Config{})
	k := newConn(tr, "198.18.0.1:40000", "198.18.1.1:80")
	first := k.handshake(100, 300)
	if first.ConnID == 0 {
		t.Fatal("ConnID 0 for a tracked connection")
	}
	k.send(true, finAck, 101, 301, 0)
	k.send(false, finAck, 301, 102, 0)
	// The final ACK is held: the new SYN replaces the connection before it
	// is delivered.
	final := k.tr.Observe(&statetrack.Segment{Src: k.c, Dst: k.s, Flags: ack, Seq: 102, Ack: 302}, k.now)
	syn := k.send(true, statetrack.SYN, 5000, 0, 0)
	if !syn.NewIncarnation || !syn.NewConn || syn.ConnID == first.ConnID || syn.ConnID == 0 {
		t.Fatalf("new SYN: NewIncarnation=%v NewConn=%v ConnID %d (old %d)", syn.NewIncarnation, syn.NewConn, syn.ConnID, first.ConnID)
	}
	if syn.Nth != 1 || syn.Retransmission {
		t.Errorf("new incarnation SYN nth=%d retx=%v, want fresh counters", syn.Nth, syn.Retransmission)
	}
	if after, changed := tr.Deliver(&final, k.now); changed || after != ([2]statetrack.State{}) {
		t.Errorf("Deliver of the old incarnation's packet = %v, %v; want no-op", after, changed)
	}
	if tr.Len() != 1 {
		t.Errorf("Len = %d, want 1", tr.Len())
	}
	// The freed slot is reused by another tuple: the stale ConnID still
	// matches nothing.
	tr2 := statetrack.New(statetrack.Config{MaxConnections: 1})
	a := newConn(tr2, "198.18.0.1:1", "198.18.1.1:80").send(true, statetrack.SYN, 1, 0, 0)
	b := newConn(tr2, "198.18.0.1:2", "198.18.1.1:80").send(true, statetrack.SYN, 1, 0, 0)
	if a.ConnID == b.ConnID {
		t.Fatalf("slot reuse gave the same ConnID %d", a.ConnID)
	}
	if _, changed := tr2.Deliver(&a, t0); changed {
		t.Error("Deliver with an evicted ConnID changed a state")
	}
}

func TestIPv6AndMappedTuples(t *testing.T) {
	tr := statetrack.New(statetrack.Config{ServerPorts: []uint16{8080}})
	v6 := newConn(tr, "[fd00:1::2]:40312", "[fd00:2::1]:8080")
	o := v6.handshake(1, 2)
	if o.Client != v6.c || o.Server != v6.s || o.After != [2]statetrack.State{statetrack.Established, statetrack.SynRcvd} {
		t.Errorf("v6 handshake: %v->%v %v", o.Client, o.Server, o.After)
	}
	// 198.18.0.1 and ::ffff:198.18.0.1 are different tuples.
	v4 := newConn(tr, "198.18.0.1:40312", "198.18.1.1:8080")
	mapped := newConn(tr, "[::ffff:198.18.0.1]:40312", "[::ffff:198.18.1.1]:8080")
	a := v4.send(true, statetrack.SYN, 1, 0, 0)
	b := mapped.send(true, statetrack.SYN, 1, 0, 0)
	if a.ConnID == b.ConnID || !b.NewConn || b.Server != mapped.s {
		t.Errorf("IPv4 and IPv4-mapped tuples merged: %d %d new=%v server %v", a.ConnID, b.ConnID, b.NewConn, b.Server)
	}
	if tr.Len() != 3 {
		t.Errorf("Len = %d, want 3", tr.Len())
	}
	// Mid-stream pickup over IPv6 with the server port on the source.
	p := newConn(tr, "[fd00:1::3]:5555", "[fd00:2::1]:8080").send(false, ack, 10, 20, 5)
	if !p.Midstream || p.From != statetrack.Server || p.Kind != statetrack.Data {
		t.Errorf("v6 pickup: midstream=%v from=%v kind=%v", p.Midstream, p.From, p.Kind)
	}
}

func TestSequenceWraparound(t *testing.T) {
	tr := statetrack.New(statetrack.Config{})
	k := newConn(tr, "198.18.0.1:40000", "198.18.1.1:80")
	const ci, si = 0xfffffff0, 0xffffffff // the server's SYN-ACK occupies 0xffffffff, its data starts at 0
	k.handshake(ci, si)
	for _, c := range []struct {
		name     string
		seq      seqnum.Value
		n        uint32
		wantRetx bool
	}{
		{"data across the wrap", ci + 1, 0x20, false},
		{"its retransmission", ci + 1, 0x20, true},
		{"new data after the wrap", 0x11, 0x10, false},
		{"a retransmission of the bytes before the wrap", 0xfffffff8, 4, true},
	} {
		o := k.send(true, ack, c.seq, 0, c.n)
		if o.Kind != statetrack.Data || o.Retransmission != c.wantRetx {
			t.Errorf("%s: kind %v retx %v, want data retx %v", c.name, o.Kind, o.Retransmission, c.wantRetx)
		}
	}
	// The server's FIN at 0 is acknowledged by 1 across the wrap.
	k.send(false, finAck, 0, 0x21, 0)
	o := k.send(true, ack, 0x21, 1, 0)
	if o.Kind != statetrack.FinAck {
		t.Errorf("ACK of a FIN at seq 0: kind %v, want fin-ack", o.Kind)
	}
	// The server's ACK acknowledging nothing new: not a fin-ack of anything.
	if o := k.send(false, ack, 1, 0x21, 0); o.Kind != statetrack.Ack {
		t.Errorf("plain ack: kind %v", o.Kind)
	}
}

func TestDefaultsTimeWaitAndIdle(t *testing.T) {
	var gone []statetrack.Gone
	tr := statetrack.New(statetrack.Config{OnGone: func(g statetrack.Gone) { gone = append(gone, g) }})
	tw := newConn(tr, "198.18.0.1:1", "198.18.1.1:80")
	tw.handshake(100, 300)
	tw.send(true, finAck, 101, 301, 0)
	tw.send(false, finAck, 301, 102, 0)
	tw.send(true, ack, 102, 302, 0)
	idle := newConn(tr, "198.18.0.1:2", "198.18.1.1:80")
	idle.handshake(100, 300)
	tr.Expire(t0.Add(60*time.Second - 1))
	if len(gone) != 0 {
		t.Fatalf("expired before 2×MSL: %+v", gone)
	}
	tr.Expire(t0.Add(10 * time.Minute))
	if len(gone) != 2 {
		t.Fatalf("got %d Gone, want 2", len(gone))
	}
	if g := gone[0]; g.Reason != statetrack.TimeWaitExpired || !g.At.Equal(t0.Add(60*time.Second)) ||
		g.After != [2]statetrack.State{statetrack.Closed, statetrack.Closed} {
		t.Errorf("first Gone = %v at %v, %v", g.Reason, g.At.Sub(t0), g.After)
	}
	if g := gone[1]; g.Reason != statetrack.IdleExpired || !g.At.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("second Gone = %v at %v", g.Reason, g.At.Sub(t0))
	}
	if st := tr.Stats(); st.TimeWaitExpired != 1 || st.IdleExpired != 1 || tr.Len() != 0 {
		t.Errorf("Stats %+v Len %d", st, tr.Len())
	}
}

func TestSelfConnectKey(t *testing.T) {
	tr := statetrack.New(statetrack.Config{})
	k := newConn(tr, "198.18.0.1:5000", "198.18.0.1:5000")
	o := k.send(true, statetrack.SYN, 7, 0, 0)
	if o.From != statetrack.Client || o.Client != o.Server {
		t.Errorf("self-connect SYN: from %v, %v->%v", o.From, o.Client, o.Server)
	}
	// The same address with another port is a different, ordinary tuple.
	p := newConn(tr, "198.18.0.1:5000", "198.18.0.1:5001").send(true, statetrack.SYN, 7, 0, 0)
	if p.ConnID == o.ConnID || p.After != [2]statetrack.State{statetrack.SynSent, statetrack.Listen} {
		t.Errorf("loopback tuple: %d vs %d, %v", p.ConnID, o.ConnID, p.After)
	}
}

func TestObserveDeliverEstablishedAllocs(t *testing.T) {
	tr := statetrack.New(statetrack.Config{})
	k := newConn(tr, "198.18.0.1:40000", "198.18.1.1:80")
	k.handshake(100, 300)
	data := statetrack.Segment{Src: k.c, Dst: k.s, Flags: ack | statetrack.PSH, Seq: 101, Ack: 301, Len: 1000}
	reply := statetrack.Segment{Src: k.s, Dst: k.c, Flags: ack, Seq: 301, Ack: 1101}
	allocs := testing.AllocsPerRun(1000, func() {
		o := tr.Observe(&data, t0)
		tr.Deliver(&o, t0)
		o = tr.Observe(&reply, t0)
		tr.Deliver(&o, t0)
		data.Seq += 1000
		reply.Ack += 1000
	})
	if allocs != 0 {
		t.Errorf("Observe+Deliver on an established connection: %v allocs, want 0", allocs)
	}
}

// TestStatsAddSumsEveryField fails when a counter is added to Stats but
// not to Add.
func TestStatsAddSumsEveryField(t *testing.T) {
	var o statetrack.Stats
	v := reflect.ValueOf(&o).Elem()
	for i := range v.NumField() {
		v.Field(i).SetUint(uint64(i + 1))
	}
	var s statetrack.Stats
	s.Add(o)
	s.Add(o)
	sv := reflect.ValueOf(s)
	for i := range sv.NumField() {
		if got := sv.Field(i).Uint(); got != 2*uint64(i+1) {
			t.Errorf("Stats.%s = %d after adding %d twice, want %d", sv.Type().Field(i).Name, got, i+1, 2*(i+1))
		}
	}
}

// TestSentPast: a connection is past a bound of data segments once its
// sender has sent that many; the other sender's bound of 0 always holds,
// and a bound on it makes its own packets count.
func TestSentPast(t *testing.T) {
	tr := statetrack.New(statetrack.Config{})
	k := newConn(tr, "198.18.0.1:40000", "198.19.0.1:80")
	o := k.handshake(1000, 5000)
	var b statetrack.DataBounds
	b[statetrack.Client][0] = 3 // data: statetrack.DataKinds[0]
	if statetrack.DataKinds[0] != statetrack.Data {
		t.Fatalf("DataKinds[0] = %s, want data", statetrack.DataKinds[0])
	}
	seq := seqnum.Value(1001)
	for i := 1; i <= 3; i++ {
		o = k.send(true, ack, seq, 5001, 100)
		seq += 100
		if got, want := tr.SentPast(o.ConnID, &b), i == 3; got != want || o.Nth != uint32(i) {
			t.Errorf("after data segment %d (nth %d): SentPast = %v, want %v", i, o.Nth, got, want)
		}
	}
	b[statetrack.Server][1] = 1 // the server's pure ACKs: DataKinds[1]
	if tr.SentPast(o.ConnID, &b) {
		t.Error("past a bound of 1 server ACK before the server sent any")
	}
	k.send(false, ack, 5001, seq, 0)
	if !tr.SentPast(o.ConnID, &b) {
		t.Error("not past a bound of 1 server ACK after it")
	}
	if tr.SentPast(0, &b) {
		t.Error("a connection that is gone is past its bounds")
	}
	lower, higher := b, b
	lower[statetrack.Client][0], higher[statetrack.Client][0] = 2, 4
	if !lower.AtMost(&b) || !b.AtMost(&b) || higher.AtMost(&b) {
		t.Errorf("AtMost: lower %v, same %v, higher %v; want true, true, false", lower.AtMost(&b), b.AtMost(&b), higher.AtMost(&b))
	}
}
