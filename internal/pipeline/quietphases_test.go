package pipeline

import (
	"slices"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// shortConn is a short connection as a live path with both quiet phases
// queues it: SYN, SYN-ACK, (third ACK unseen), the client's FIN, (its ACK
// unseen), the server's FIN, the final ACK.
func shortConn() []*statetrack.Segment {
	return []*statetrack.Segment{
		seg(true, syn, 100, 0), seg(false, synAck, 300, 101),
		seg(true, finAck, 101, 301), seg(false, finAck, 301, 102), seg(true, ack, 102, 302),
	}
}

// run hands p the segments, reporting each proposed quiet back as carried
// out, and returns the Quiet of each verdict.
func run(p *Pipeline, segs []*statetrack.Segment) []bool {
	var q []bool
	for _, s := range segs {
		v := p.Handle(s, t0)
		if v.Quiet {
			p.Quieted(v.Obs.ConnID, t0)
		}
		q = append(q, v.Quiet)
	}
	return q
}

func TestQuietPhases(t *testing.T) {
	both := QuietPhases{Handshake: true, Close: true}
	p, rec := newPipeline(t, rule(statetrack.FinalAck, rules.Action{Type: rules.Drop}))
	if got := p.AllowQuietPhases(both); got != (QuietPhases{}) {
		t.Errorf("phases %+v before AllowQuiet, want none", got)
	}
	p.AllowQuiet()
	if got := p.QuietPhases(); got != both {
		t.Fatalf("phases %+v, want both", got)
	}
	segs := shortConn()
	segs[4] = seg(true, ack, 102, 302) // not dropped: the rule needs a final-ack, and this is one
	q := run(p, segs[:2])
	if !q[1] || q[0] {
		t.Fatalf("quiet per packet %v, want the SYN-ACK's only", q)
	}
	e := rec.last()
	if e.Reason != events.QuietHandshake || e.ClientState != statetrack.Established || e.ServerState != statetrack.Established || e.HasPacket() {
		t.Errorf("after the SYN-ACK's quiet: %+v, want a quiet-handshake state event, both ESTABLISHED", e)
	}
	if e.Client != client || e.Server != server || e.ConnID == 0 {
		t.Errorf("quiet-handshake event of %s->%s #%d", e.Client, e.Server, e.ConnID)
	}
	q = run(p, segs[2:4])
	if !q[0] || q[1] {
		t.Errorf("quiet per packet %v, want the first FIN's only", q)
	}
	if e := rec.last(); e.Kind != statetrack.Fin || e.ClientState != statetrack.TimeWait || e.ServerState != statetrack.LastAck {
		t.Errorf("the server's FIN: %s %s/%s, want fin TIME_WAIT/LAST_ACK (FIN_WAIT_2 unseen)", e.Kind, e.ClientState, e.ServerState)
	}
	s := p.Summary().Stats
	if s.Packets[statetrack.HandshakeAck] != 0 || s.Packets[statetrack.FinAck] != 0 {
		t.Errorf("handshake-acks %d, fin-acks %d seen, want none", s.Packets[statetrack.HandshakeAck], s.Packets[statetrack.FinAck])
	}
	if p.Summary().Tracker.Quieted != 2 {
		t.Errorf("quieted %d times, want 2", p.Summary().Tracker.Quieted)
	}

	for _, c := range []struct {
		name    string
		rules   []rules.Rule
		allowed QuietPhases
		want    QuietPhases
	}{
		{"handshake-ack rule", []rules.Rule{rule(statetrack.HandshakeAck, rules.Action{Type: rules.Duplicate, Copies: 1})}, both, QuietPhases{Close: true}},
		{"fin-ack rule", []rules.Rule{rule(statetrack.FinAck, rules.Action{Type: rules.Delay})}, both, QuietPhases{Handshake: true}},
		{"data rule", []rules.Rule{rule(statetrack.Data, rules.Action{Type: rules.Drop})}, both, QuietPhases{}},
		{"expectation on the handshake", nil, QuietPhases{Close: true}, QuietPhases{Close: true}},
		{"expectation on the close", nil, QuietPhases{Handshake: true}, QuietPhases{Handshake: true}},
	} {
		p, _ := newPipeline(t, c.rules...)
		p.AllowQuiet()
		if got := p.AllowQuietPhases(c.allowed); got != c.want {
			t.Errorf("%s: phases %+v, want %+v", c.name, got, c.want)
		}
		segs := shortConn()
		if !c.want.Handshake { // the third ACK is queued
			segs = append(segs[:2], append([]*statetrack.Segment{seg(true, ack, 101, 301)}, segs[2:]...)...)
		}
		q := run(p, segs)
		if !c.want.Handshake {
			q = append(q[:2], q[3:]...) // the third ACK's is the data phase's
		}
		if q[1] != c.want.Handshake || q[2] != c.want.Close {
			t.Errorf("%s: quiet per packet %v, want the SYN-ACK's %v, the FIN's %v", c.name, q, c.want.Handshake, c.want.Close)
		}
	}

	// Faulted packets never go quiet.
	p, _ = newPipeline(t, rule(statetrack.SynAck, rules.Action{Type: rules.Duplicate, Copies: 1}), rule(statetrack.Fin, rules.Action{Type: rules.Duplicate, Copies: 1}))
	p.AllowQuiet()
	if got := p.AllowQuietPhases(both); got != both {
		t.Fatalf("phases %+v, want both", got)
	}
	if q := run(p, shortConn()); q[1] || q[2] {
		t.Errorf("quiet per packet %v with the SYN-ACK and the FINs duplicated, want none", q)
	}

	// The packets queued behind a quiet first FIN keep the close quiet
	// (a verdict without the bit would wake it in the kernel); a
	// retransmitted FIN and a FIN that does not find both ends
	// ESTABLISHED do not go quiet, nor does a packet after them.
	p, _ = newPipeline(t)
	p.AllowQuiet()
	p.AllowQuietPhases(QuietPhases{Close: true})
	q = run(p, []*statetrack.Segment{
		seg(true, syn, 100, 0), seg(false, synAck, 300, 101), seg(true, ack, 101, 301),
		seg(true, finAck, 101, 301), seg(false, ack|statetrack.PSH, 301, 102), seg(true, finAck, 101, 301),
		seg(false, ack, 311, 102), seg(false, finAck, 311, 102),
	})
	if want := []bool{false, false, true, true, true, false, false, false}; !slices.Equal(q, want) {
		t.Errorf("quiet per packet %v, want %v", q, want)
	}

	// After a retransmission of the client's SYN no SYN-ACK goes quiet:
	// the server's answer to it could come after the third ACK.
	p, _ = newPipeline(t)
	p.AllowQuiet()
	p.AllowQuietPhases(both)
	q = run(p, []*statetrack.Segment{seg(true, syn, 100, 0), seg(true, syn, 100, 0), seg(false, synAck, 300, 101), seg(false, synAck, 300, 101)})
	if slices.Contains(q, true) {
		t.Errorf("quiet per packet %v after a SYN retransmission, want none", q)
	}

	// Nor does a retransmitted SYN-ACK (the first one dropped): the
	// client's SYN retransmission races it and may reach the server after
	// the third ACK.
	p, _ = newPipeline(t, rules.Rule{Name: "lose-syn-ack", Match: rules.Match{Packets: []statetrack.Kind{statetrack.SynAck}, Nth: 1}, Action: rules.Action{Type: rules.Drop}, Probability: 1})
	p.AllowQuiet()
	p.AllowQuietPhases(both)
	q = run(p, []*statetrack.Segment{seg(true, syn, 100, 0), seg(false, synAck, 300, 101), seg(false, synAck, 300, 101)})
	if slices.Contains(q, true) {
		t.Errorf("quiet per packet %v with the first SYN-ACK lost, want none", q)
	}

	// A reload decides the phases again.
	p, _ = newPipeline(t)
	p.AllowQuiet()
	p.AllowQuietPhases(both)
	p.Switch(rules.Compile([]rules.Rule{{Name: "f", Match: rules.Match{Packets: []statetrack.Kind{statetrack.FinAck}}, Action: rules.Action{Type: rules.Drop}, Probability: 1}}))
	if got := p.QuietPhases(); got != (QuietPhases{Handshake: true}) {
		t.Errorf("after a reload adding a fin-ack rule: phases %+v, want the handshake only", got)
	}
	p.Switch(rules.Compile(nil))
	if got := p.QuietPhases(); got != both {
		t.Errorf("after a reload removing it: phases %+v, want both", got)
	}
}

// establishedQuietClose returns a pipeline that may let closes go quiet,
// with one connection ESTABLISHED.
func establishedQuietClose(t *testing.T) (*Pipeline, *recorder) {
	p, rec := newPipeline(t)
	p.AllowQuiet()
	p.AllowQuietPhases(QuietPhases{Close: true})
	for _, s := range []*statetrack.Segment{seg(true, syn, 100, 0), seg(false, synAck, 300, 101), seg(true, ack, 101, 301)} {
		p.Handle(s, t0)
	}
	return p, rec
}

// TestQuietCloseDeclined: once a verdict after a quiet first FIN went
// without the quiet bit (the live path declined it: its burst was not
// read dry, or a later packet of the connection in the same burst was not
// quiet),
// the kernel's filter chain has cleared the bit, and after a first FIN no
// verdict but the FIN's own sets it again: the connection's later packets
// are all queued, and their verdicts must not propose Quiet (the live
// path would report them quiet, and the tracker would take a connection
// it sees whole for one whose packets pass unseen).
func TestQuietCloseDeclined(t *testing.T) {
	p, _ := establishedQuietClose(t)
	v := p.Handle(seg(true, finAck, 101, 301), t0)
	if !v.Quiet {
		t.Fatal("the first FIN's verdict is not quiet")
	}
	p.Quieted(v.Obs.ConnID, t0)
	v = p.Handle(seg(false, ack, 301, 102), t0)
	if !v.Quiet {
		t.Fatal("the ACK queued behind the quiet first FIN is not quiet")
	}
	p.Declined(v.Obs.ConnID)
	data := seg(false, ack|statetrack.PSH, 301, 102)
	data.Len = 100
	if v := p.Handle(data, t0); v.Quiet {
		t.Errorf("data after a declined quiet verdict of a quiet close proposes Quiet")
	}
}

// TestQuietCloseInOneBurst: the packets queued behind a quiet first FIN
// may be read in the FIN's own burst, before its verdict is written (and
// Quieted): they keep the close quiet all the same, until a verdict is
// declined or the second FIN comes.
func TestQuietCloseInOneBurst(t *testing.T) {
	p, rec := establishedQuietClose(t)
	data := seg(false, ack|statetrack.PSH, 301, 102)
	data.Len = 100
	var burst []uint64
	for i, s := range []*statetrack.Segment{seg(true, finAck, 101, 301), seg(false, ack, 301, 102), data} {
		v := p.Handle(s, t0)
		if !v.Quiet {
			t.Fatalf("packet %d of the first FIN's burst: not quiet", i)
		}
		burst = append(burst, v.Obs.ConnID)
	}
	for _, id := range burst { // the burst's verdicts are written
		p.Quieted(id, t0)
	}
	if v := p.Handle(seg(false, finAck, 401, 102), t0); v.Quiet {
		t.Error("the second FIN proposes Quiet")
	}
	if e := rec.last(); e.Kind != statetrack.Fin || e.ClientState != statetrack.TimeWait || e.ServerState != statetrack.LastAck {
		t.Errorf("the second FIN: %s %s/%s, want fin TIME_WAIT/LAST_ACK", e.Kind, e.ClientState, e.ServerState)
	}

	// The same burst with the FIN's verdict declined at once (a packet of
	// the connection whose verdict cannot be quiet came in between).
	p, _ = establishedQuietClose(t)
	v := p.Handle(seg(true, finAck, 101, 301), t0)
	p.Declined(v.Obs.ConnID)
	if v := p.Handle(seg(false, ack, 301, 102), t0); v.Quiet {
		t.Error("the ACK after a declined first FIN's verdict proposes Quiet")
	}
}

// TestQuietAfterNth: with a rule that delays the client's 2nd data
// segment, a connection goes quiet once the client has sent it (no later
// segment can be its 2nd), not before and not on the delayed one; with
// the rule on either sender's 2nd, only once both have sent two.
func TestQuietAfterNth(t *testing.T) {
	client := statetrack.Client
	for _, c := range []struct {
		name string
		from *statetrack.Side
		want []bool // per packet after the handshake: client data, server data, ...
	}{
		{"client's", &client, []bool{false, false, false, true, true, true}},
		{"either's", nil, []bool{false, false, false, false, true, true}},
	} {
		r := rule(statetrack.Data, rules.Action{Type: rules.Delay, Delay: time.Millisecond})
		r.Match.Nth, r.Match.From = 2, c.from
		p, _ := newPipeline(t, r)
		if p.AllowQuiet() {
			t.Fatalf("%s: the data phase past a rule's nth goes quiet without AllowQuietPhases' PastNth", c.name)
		}
		if got := p.AllowQuietPhases(QuietPhases{PastNth: true}); !got.PastNth || !p.AllowQuiet() {
			t.Fatalf("%s: a data rule of one nth keeps the data phase from going quiet (phases %+v)", c.name, got)
		}
		for _, s := range []*statetrack.Segment{seg(true, syn, 100, 0), seg(false, synAck, 300, 101), seg(true, ack, 101, 301)} {
			if v := p.Handle(s, t0); v.Quiet {
				t.Errorf("%s: handshake packet %s proposes quiet", c.name, s.Flags)
			}
		}
		cseq, sseq := uint32(101), uint32(301)
		for i, want := range c.want {
			fromClient := i%2 == 0
			s := seg(fromClient, ack|statetrack.PSH, cseq, sseq)
			if !fromClient {
				s = seg(false, ack|statetrack.PSH, sseq, cseq)
			}
			s.Len = 10
			v := p.Handle(s, t0)
			if fromClient {
				cseq += 10
			} else {
				sseq += 10
			}
			if v.Quiet != want {
				t.Errorf("%s: packet %d (%s nth %d, %s): quiet %v, want %v", c.name, i, v.Obs.From, v.Obs.Nth, v.Action, v.Quiet, want)
			}
			if v.Quiet {
				p.Quieted(v.Obs.ConnID, t0)
			}
		}
	}
}
