package pipeline

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

var (
	t0     = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	client = netip.MustParseAddrPort("198.18.1.2:40000")
	server = netip.MustParseAddrPort("198.19.2.2:8080")
)

// recorder keeps every event.
type recorder []events.Event

func (r *recorder) Emit(e events.Event) { *r = append(*r, e) }

func (r recorder) last() events.Event { return r[len(r)-1] }

func seg(fromClient bool, flags statetrack.Flags, seq, ack uint32) *statetrack.Segment {
	s := &statetrack.Segment{Src: client, Dst: server, Seq: seqnum.Value(seq), Ack: seqnum.Value(ack), Flags: flags}
	if !fromClient {
		s.Src, s.Dst = server, client
	}
	return s
}

func newPipeline(t testing.TB, rs ...rules.Rule) (*Pipeline, *recorder) {
	t.Helper()
	for i := range rs {
		rs[i].Name = "r"
		rs[i].Probability = 1
	}
	rec := &recorder{}
	return New(statetrack.Config{MSL: time.Second, ServerPorts: []uint16{8080}}, rules.Compile(rs), 1, rec), rec
}

func rule(kind statetrack.Kind, a rules.Action) rules.Rule {
	return rules.Rule{Match: rules.Match{Packets: []statetrack.Kind{kind}}, Action: a}
}

const (
	syn    = statetrack.SYN
	synAck = statetrack.SYN | statetrack.ACK
	ack    = statetrack.ACK
	finAck = statetrack.FIN | statetrack.ACK
)

func TestAcceptedPacketShowsTheReceiversNewState(t *testing.T) {
	p, rec := newPipeline(t)
	v := p.Handle(seg(true, syn, 100, 0), t0)
	if v.Action != rules.Accept {
		t.Fatalf("action = %s, want accept", v.Action)
	}
	e := rec.last()
	if e.Kind != statetrack.Syn || e.From != statetrack.Client || e.ClientState != statetrack.SynSent || e.ServerState != statetrack.SynRcvd || e.Rule != "" || e.Action != rules.Accept {
		t.Errorf("event = %+v, want an accepted syn with the server already in SYN_RCVD", e)
	}
	if e.Conn() != "198.18.1.2:40000->198.19.2.2:8080" || e.Seq != 100 || e.Flags != statetrack.SYN || !e.Time.Equal(t0) {
		t.Errorf("event = %+v, want conn, seq, flags and time of the packet", e)
	}
}

func TestDroppedPacketNeverReachesTheReceiver(t *testing.T) {
	p, rec := newPipeline(t, rule(statetrack.Syn, rules.Action{Type: rules.Drop}))
	if v := p.Handle(seg(true, syn, 100, 0), t0); v.Action != rules.Drop {
		t.Fatalf("action = %s, want drop", v.Action)
	}
	e := rec.last()
	if e.Rule != "r" || e.Action != rules.Drop || e.ServerState == statetrack.SynRcvd {
		t.Errorf("event = %+v, want a drop by r with the server not in SYN_RCVD", e)
	}
	if s := p.Summary(); s.Stats.Actions[rules.Drop] != 1 || s.Rules[0].Hits != 1 || s.Stats.Packets[statetrack.Syn] != 1 {
		t.Errorf("summary = %+v, want one dropped syn counted for r", s)
	}
}

func TestDelayedPacketMovesTheReceiverWhenReleased(t *testing.T) {
	p, rec := newPipeline(t, rule(statetrack.SynAck, rules.Action{Type: rules.Delay, Delay: 300 * time.Millisecond}))
	p.Handle(seg(true, syn, 100, 0), t0)
	v := p.Handle(seg(false, synAck, 500, 101), t0.Add(time.Millisecond))
	if v.Action != rules.Delay || v.Hold != 300*time.Millisecond {
		t.Fatalf("verdict = %+v, want a 300ms delay", v)
	}
	if e := rec.last(); e.Action != rules.Delay || e.Delay != 300*time.Millisecond || e.ClientState != statetrack.SynSent {
		t.Errorf("delay event = %+v, want the client still in SYN_SENT", e)
	}
	released := t0.Add(301 * time.Millisecond)
	p.Deliver(&v, released)
	e := rec.last()
	if !e.IsState() || e.Reason != events.Released || e.ClientState != statetrack.Established || !e.Time.Equal(released) || e.From != statetrack.Server {
		t.Errorf("release event = %+v, want the client ESTABLISHED at the release", e)
	}
}

func TestDuplicateArrivalIsAStateEventOnlyWhenItChangesSomething(t *testing.T) {
	p, rec := newPipeline(t, rule(statetrack.Syn, rules.Action{Type: rules.Duplicate, Copies: 1, After: time.Second}))
	v := p.Handle(seg(true, syn, 100, 0), t0)
	if v.Action != rules.Duplicate || v.Copies != 1 || v.After != time.Second {
		t.Fatalf("verdict = %+v, want one copy after 1s", v)
	}
	if e := rec.last(); e.Action != rules.Duplicate || e.Copies != 1 || e.After != time.Second || e.ServerState != statetrack.SynRcvd {
		t.Errorf("duplicate event = %+v, want the original delivered at once", e)
	}
	n := len(*rec)
	p.Deliver(&v, t0.Add(time.Second)) // the server is already in SYN_RCVD
	if len(*rec) != n {
		t.Errorf("a copy that changed nothing produced an event: %+v", rec.last())
	}
}

func TestTimeWaitExpiryIsReported(t *testing.T) {
	p, rec := newPipeline(t)
	at := t0
	step := func(fromClient bool, f statetrack.Flags, seq, ackn uint32) {
		at = at.Add(time.Millisecond)
		p.Handle(seg(fromClient, f, seq, ackn), at)
	}
	step(true, syn, 100, 0)
	step(false, synAck, 500, 101)
	step(true, ack, 101, 501)
	step(true, finAck, 101, 501)
	step(false, finAck, 501, 102)
	step(true, ack, 102, 502)
	if e := rec.last(); e.Kind != statetrack.FinalAck || e.ClientState != statetrack.TimeWait {
		t.Fatalf("last event = %+v, want final-ack into TIME_WAIT", e)
	}
	p.Expire(at.Add(time.Second)) // 2×MSL is 2s: not yet
	if e := rec.last(); e.IsState() {
		t.Fatalf("expired early: %+v", e)
	}
	p.Expire(at.Add(3 * time.Second))
	e := rec.last()
	if !e.IsState() || e.Reason != events.Gone(statetrack.TimeWaitExpired) || e.ClientState != statetrack.Closed || e.Conn() != "198.18.1.2:40000->198.19.2.2:8080" {
		t.Errorf("expiry event = %+v, want time-wait-expired with the client CLOSED", e)
	}
	if s := p.Summary(); s.Tracker.TimeWaitExpired != 1 || s.Tracked != 0 {
		t.Errorf("summary tracker = %+v tracked %d, want one expiry and an empty table", s.Tracker, s.Tracked)
	}
}

func TestSummaryAdd(t *testing.T) {
	p1, _ := newPipeline(t, rule(statetrack.Syn, rules.Action{Type: rules.Drop}))
	p2, _ := newPipeline(t, rule(statetrack.Syn, rules.Action{Type: rules.Drop}))
	p1.Handle(seg(true, syn, 100, 0), t0)
	p2.Handle(seg(true, syn, 100, 0), t0)
	p2.Handle(seg(true, syn, 100, 0), t0.Add(time.Second))
	var total Summary
	total.Add(p1.Summary())
	total.Add(p2.Summary())
	if total.Rules[0].Name != "r" || total.Rules[0].Hits != 3 || total.Stats.Packets[statetrack.Syn] != 3 || total.Tracker.Connections != 2 {
		t.Errorf("total = %+v, want 3 syns dropped by r over 2 connections", total)
	}
}

func TestNoSinkNoEvents(t *testing.T) {
	p := New(statetrack.Config{}, rules.Compile(nil), 1, nil)
	v := p.Handle(seg(true, syn, 100, 0), t0)
	p.Deliver(&v, t0)
	if p.Summary().Stats.Packets[statetrack.Syn] != 1 {
		t.Error("packet not counted without a sink")
	}
}

func TestQuietOnlyWhenAllowedEstablishedAndAccepted(t *testing.T) {
	// handshake runs a connection through the pipeline; like the live
	// path, it reports each proposed quiet back as carried out.
	handshake := func(p *Pipeline) []bool {
		var q []bool
		for _, s := range []*statetrack.Segment{
			seg(true, syn, 100, 0), seg(false, synAck, 300, 101), seg(true, ack, 101, 301),
			seg(false, ack|statetrack.PSH, 301, 101), seg(true, finAck, 101, 302),
		} {
			v := p.Handle(s, t0)
			if v.Quiet {
				p.Quieted(v.Obs.ConnID, t0)
			}
			q = append(q, v.Quiet)
		}
		return q
	}
	p, _ := newPipeline(t, rule(statetrack.FinalAck, rules.Action{Type: rules.Drop}))
	if q := handshake(p); q[2] || q[3] {
		t.Errorf("quiet %v without AllowQuiet", q)
	}
	p, _ = newPipeline(t, rule(statetrack.FinalAck, rules.Action{Type: rules.Drop}))
	if !p.AllowQuiet() {
		t.Fatal("AllowQuiet refused a control-only rule set")
	}
	// syn, syn-ack: handshake not done; handshake-ack and data: quiet; fin: closing
	if q := handshake(p); q[0] || q[1] || !q[2] || !q[3] || q[4] {
		t.Errorf("quiet per packet %v, want [false false true true false]", q)
	}
	if s := p.Summary(); s.Tracker.Quieted != 2 {
		t.Errorf("tracker quieted %d times, want 2 (the data packet woke the connection, it went quiet again)", s.Tracker.Quieted)
	}
	// A proposed quiet the live path does not carry out leaves the tracker
	// watching the connection.
	p, _ = newPipeline(t, rule(statetrack.FinalAck, rules.Action{Type: rules.Drop}))
	p.AllowQuiet()
	for _, s := range []*statetrack.Segment{seg(true, syn, 100, 0), seg(false, synAck, 300, 101), seg(true, ack, 101, 301)} {
		p.Handle(s, t0)
	}
	if s := p.Summary(); s.Tracker.Quieted != 0 {
		t.Errorf("tracker quieted %d times without Quieted, want 0", s.Tracker.Quieted)
	}

	p, _ = newPipeline(t, rule(statetrack.HandshakeAck, rules.Action{Type: rules.Drop}))
	p.AllowQuiet()
	p.Handle(seg(true, syn, 100, 0), t0)
	p.Handle(seg(false, synAck, 300, 101), t0)
	if v := p.Handle(seg(true, ack, 101, 301), t0); v.Action != rules.Drop || v.Quiet {
		t.Errorf("dropped handshake-ack: %v quiet %v, want drop, not quiet", v.Action, v.Quiet)
	}

	p, _ = newPipeline(t, rule(statetrack.Data, rules.Action{Type: rules.Drop}))
	if p.AllowQuiet() {
		t.Error("AllowQuiet accepted a rule set acting on data")
	}
	if q := handshake(p); q[2] || q[3] {
		t.Errorf("quiet %v with a data rule", q)
	}

	// A rule on keepalives, or one on the idle gap (a quiet connection's
	// gaps are unknown), keeps every connection watched.
	idle := rule(statetrack.Fin, rules.Action{Type: rules.Drop})
	idle.Match.Idle = time.Minute
	for _, r := range []rules.Rule{rule(statetrack.Keepalive, rules.Action{Type: rules.Drop}), idle} {
		if p, _ = newPipeline(t, r); p.AllowQuiet() {
			t.Errorf("AllowQuiet accepted %+v", r.Match)
		}
	}
}

// resetPipeline is a pipeline with the one rule r, through the handshake
// of client ISN 100 and server ISN 500; dataSeg is a segment of n bytes
// at the sequence numbers that follow.
func resetPipeline(t *testing.T, r rules.Rule) (*Pipeline, *recorder) {
	t.Helper()
	p, rec := newPipeline(t, r)
	for _, s := range []*statetrack.Segment{seg(true, syn, 100, 0), seg(false, synAck, 500, 101), seg(true, ack, 101, 501)} {
		p.Handle(s, t0)
	}
	return p, rec
}

// dataSeg is a data segment of n bytes after resetPipeline's handshake.
func dataSeg(fromClient bool, n uint32) *statetrack.Segment {
	s := seg(true, ack|statetrack.PSH, 101, 501)
	if !fromClient {
		s = seg(false, ack|statetrack.PSH, 501, 101)
	}
	s.Len = n
	return s
}

// An RST sent to the client alone moves only the client: the server it
// impersonates never sent it and stays ESTABLISHED until its next segment
// draws the client's own RST.
func TestResetClientMovesOnlyTheClient(t *testing.T) {
	r := rule(statetrack.Data, rules.Action{Type: rules.Reset, Reset: rules.ToClient})
	r.Match.Nth = 1
	p, rec := resetPipeline(t, r)
	data := dataSeg(false, 10)
	if v := p.Handle(data, t0); v.Action != rules.Reset || v.Resets().N != 1 {
		t.Fatalf("verdict = %+v, want a reset with one RST", v)
	}
	e := rec.last()
	if !e.Injected || e.From != statetrack.Server || e.ClientState != statetrack.Closed || e.ServerState != statetrack.Established {
		t.Fatalf("injected RST event = %+v, want the client CLOSED and the server still ESTABLISHED", e)
	}
	if s := p.Summary(); s.Stats.Injected != 1 || s.Stats.Packets[statetrack.Rst] != 0 {
		t.Errorf("summary stats %+v, want 1 injected RST not counted as a packet seen", s.Stats)
	}
	p.Handle(data, t0) // the retransmission reaches the closed client
	p.Handle(seg(true, statetrack.RST, 101, 0), t0)
	if e := rec.last(); e.Kind != statetrack.Rst || e.From != statetrack.Client || e.Injected || e.ServerState != statetrack.Closed {
		t.Errorf("client's RST event = %+v, want the server CLOSED by it", e)
	}
}

// An RST outside the window (one past the exact sequence number) draws a
// challenge ACK: neither end moves, not even the one it impersonates.
func TestResetOutsideTheWindowMovesNobody(t *testing.T) {
	r := rule(statetrack.Data, rules.Action{Type: rules.Reset, Reset: rules.ToServer, OutsideWindow: true})
	p, rec := resetPipeline(t, r)
	p.Handle(dataSeg(true, 10), t0)
	if e := rec.last(); !e.Injected || e.Seq != 102 || e.ClientState != statetrack.Established || e.ServerState != statetrack.Established {
		t.Errorf("injected RST event = %+v, want seq 102 and both ends still ESTABLISHED", e)
	}
}

// A reset of the client in place of its own data takes that data back:
// the server never got it and the client, reset, never resends it, so the
// client kernel's RST to the server's next segment carries the data's
// sequence number, which the server takes.
func TestResetOfTheSenderTakesItsPacketBack(t *testing.T) {
	r := rule(statetrack.Data, rules.Action{Type: rules.Reset, Reset: rules.ToClient})
	r.Match.From = new(statetrack.Client)
	p, rec := resetPipeline(t, r)
	p.Handle(dataSeg(true, 10), t0)
	if e := rec.last(); !e.Injected || e.ClientState != statetrack.Closed || e.ServerState != statetrack.Established {
		t.Fatalf("injected RST event = %+v, want the client CLOSED, the server ESTABLISHED", e)
	}
	p.Handle(dataSeg(false, 5), t0)
	p.Handle(seg(true, statetrack.RST, 101, 0), t0)
	if e := rec.last(); e.Kind != statetrack.Rst || e.ServerState != statetrack.Closed {
		t.Errorf("client's RST event = %+v, want the server CLOSED by it", e)
	}
}

// TestKindActionsAndStatePairs: packets are counted by kind and action,
// a rule's hits carry its action, and the tracked connections are
// counted by their endpoints' states.
func TestKindActionsAndStatePairs(t *testing.T) {
	p, _ := newPipeline(t, rule(statetrack.SynAck, rules.Action{Type: rules.Drop}))
	p.Handle(seg(true, syn, 100, 0), t0)
	p.Handle(seg(false, synAck, 500, 101), t0.Add(time.Millisecond))
	s := p.Summary()
	ka := s.Stats.KindActions
	if ka[statetrack.Syn][rules.Accept] != 1 || ka[statetrack.SynAck][rules.Drop] != 1 || ka[statetrack.SynAck][rules.Accept] != 0 {
		t.Errorf("kind/action counts %v, want one accepted syn and one dropped syn-ack", ka)
	}
	if s.Rules[0].Action != rules.Drop {
		t.Errorf("rule hits %+v, want the rule's action drop", s.Rules[0])
	}
	var n statetrack.StatePairs
	if next, more := p.CountStates(0, 10, &n); more || next != 1 {
		t.Errorf("CountStates = %d, %v; want 1, false (one slot in use)", next, more)
	}
	if n[statetrack.SynSent][statetrack.SynRcvd] != 1 {
		t.Errorf("state pairs %v, want one connection SYN_SENT/SYN_RCVD", n)
	}
	var total Summary
	total.Add(s)
	total.Add(s)
	if total.Stats.KindActions[statetrack.SynAck][rules.Drop] != 2 || total.Rules[0].Action != rules.Drop {
		t.Errorf("added summaries: %+v, want the counts doubled and the rule's action kept", total)
	}
}

// TestCallersOnGoneKept: a tracker config's own OnGone is called for
// every connection that leaves the table, whether or not the pipeline
// reports the departure as an event too (the --pcap recorder frees its
// entry there).
func TestCallersOnGoneKept(t *testing.T) {
	for _, sink := range []bool{false, true} {
		var gone []uint64
		rec := &recorder{}
		var s events.Sink
		if sink {
			s = rec
		}
		p := New(statetrack.Config{IdleTimeout: time.Second, OnGone: func(g statetrack.Gone) { gone = append(gone, g.ConnID) }}, rules.Compile(nil), 1, s)
		v := p.Handle(seg(true, syn, 100, 0), t0)
		p.Expire(t0.Add(2 * time.Second))
		if len(gone) != 1 || gone[0] != v.Obs.ConnID || v.Obs.ConnID == 0 {
			t.Errorf("sink %t: OnGone called for %v, want the connection %d once", sink, gone, v.Obs.ConnID)
		}
		if sink && (len(*rec) != 2 || !(*rec)[1].IsState()) {
			t.Errorf("the departure is not an event: %+v", *rec)
		}
	}
}

// An RST acknowledging a SYN has no window: window: outside leaves it
// exact, the SYN_SENT client takes it (connect fails with ECONNREFUSED),
// and the tracker closes the client as the kernel does.
func TestResetOutsideTheWindowStillRefusesASyn(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind statetrack.Kind
		to   rules.Endpoints
	}{
		{"syn", statetrack.Syn, rules.ToClient},
		{"syn-ack", statetrack.SynAck, rules.ToClient},
	} {
		p, rec := newPipeline(t, rule(tc.kind, rules.Action{Type: rules.Reset, Reset: tc.to, OutsideWindow: true}))
		p.Handle(seg(true, syn, 100, 0), t0)
		if tc.kind == statetrack.SynAck {
			p.Handle(seg(false, synAck, 500, 101), t0)
		}
		if e := rec.last(); !e.Injected || e.Flags != statetrack.RST|statetrack.ACK || e.Ack != 101 || e.ClientState != statetrack.Closed {
			t.Errorf("%s: injected RST event = %+v, want an RST acknowledging the SYN that closes the client", tc.name, e)
		}
	}
}
