package tap

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/execute"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// lines is a Writer that keeps one line per frame: "c1p2 @3" or
// "c1p4 @5 # dropped by r".
type lines struct {
	got []string
	err error
}

func (l *lines) Write(f capture.Frame, comment string) error {
	if l.err != nil {
		return l.err
	}
	s := fmt.Sprintf("%s @%d", f.Data, f.TS.Sub(t0)/time.Millisecond)
	if comment != "" {
		s += " # " + comment
	}
	l.got = append(l.got, s)
	return nil
}

func (l *lines) check(t *testing.T, want ...string) {
	t.Helper()
	if !slices.Equal(l.got, want) {
		t.Errorf("written\n%q\nwant\n%q", l.got, want)
	}
	l.got = nil
}

// show shows tap packet n of connection conn at n ms with verdict a (no
// rule when accept).
func show(tp execute.Tap, conn uint64, n int, a rules.ActionType) {
	v := &rules.Verdict{Decision: rules.Decision{Action: a, Rule: -1}, Obs: statetrack.Observation{ConnID: conn}}
	if a != rules.Accept {
		v.Rule, v.RuleName = 0, "r"
	}
	data := fmt.Appendf(nil, "c%dp%d", conn, n)
	tp.Arrived(&execute.Packet{Data: data, Len: len(data)}, v, t0.Add(time.Duration(n)*time.Millisecond))
}

func TestTouchedConnectionsFromFirstToLastPacket(t *testing.T) {
	w := &lines{}
	r := New(w, Options{Link: decode.LinkRaw})
	tp := r.Queue(0)
	show(tp, 1, 1, rules.Accept)
	show(tp, 2, 2, rules.Accept)
	show(tp, 1, 3, rules.Accept)
	w.check(t) // nothing touched yet
	show(tp, 1, 4, rules.Drop)
	w.check(t, "c1p1 @1", "c1p3 @3", "c1p4 @4 # dropped by r")
	show(tp, 1, 5, rules.Accept)
	show(tp, 2, 6, rules.Accept)
	show(r.Queue(1), 1, 7, rules.Accept) // another queue's connection 1
	w.check(t, "c1p5 @5")
	dup := &rules.Verdict{Decision: rules.Decision{Action: rules.Duplicate, Copies: 2, Rule: 0, RuleName: "r"}, Obs: statetrack.Observation{ConnID: 2}}
	tp.CopySent(&execute.Packet{Data: []byte("c2p6"), Len: 4}, dup, 2, t0.Add(8*time.Millisecond))
	w.check(t, "c2p6 @8 # copy 2 of 2 by r")
	if s := r.Stats(); s.Packets != 5 || s.Conns != 1 || s.LeftOut != 0 || s.Forgotten != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestAllConnections(t *testing.T) {
	w := &lines{}
	r := New(w, Options{All: true, Link: decode.LinkRaw})
	tp := r.Queue(0)
	show(tp, 1, 1, rules.Accept)
	show(tp, 2, 2, rules.Drop)
	show(tp, 0, 3, rules.Accept)
	w.check(t, "c1p1 @1", "c2p2 @2 # dropped by r", "c0p3 @3")
}

func TestBufferFullLeavesOutAndSays(t *testing.T) {
	w := &lines{}
	r := New(w, Options{MaxPackets: 2})
	tp := r.Queue(0)
	for n := 1; n <= 4; n++ {
		show(tp, 1, n, rules.Accept)
	}
	show(tp, 1, 5, rules.Drop)
	w.check(t, "c1p1 @1", "c1p2 @2", "c1p5 @5 # dropped by r; 2 packets before this one not recorded (buffer of 2 packets full)")
	if s := r.Stats(); s.LeftOut != 2 || s.Packets != 3 {
		t.Errorf("stats %+v, want 2 left out", s)
	}
}

func TestBoundsForgetLeastRecentlySeen(t *testing.T) {
	w := &lines{}
	r := New(w, Options{MaxConns: 2})
	tp := r.Queue(0)
	show(tp, 1, 1, rules.Accept)
	show(tp, 2, 2, rules.Accept)
	show(tp, 1, 3, rules.Accept) // 1 seen more recently than 2
	show(tp, 3, 4, rules.Accept) // 2 forgotten
	show(tp, 1, 5, rules.Drop)
	show(tp, 2, 6, rules.Drop)
	w.check(t, "c1p1 @1", "c1p3 @3", "c1p5 @5 # dropped by r", "c2p6 @6 # dropped by r")
	if s := r.Stats(); s.Forgotten != 1 { // 2; the touched 1 buffers nothing, so 3 stays
		t.Errorf("stats %+v, want 1 connection forgotten", s)
	}

	r = New(w, Options{MaxBytes: 9}) // each packet is 4 bytes
	tp = r.Queue(0)
	show(tp, 1, 1, rules.Accept)
	show(tp, 2, 2, rules.Accept)
	show(tp, 1, 3, rules.Accept) // 12 bytes: 2 forgotten
	show(tp, 1, 4, rules.Drop)
	show(tp, 2, 5, rules.Drop)
	w.check(t, "c1p1 @1", "c1p3 @3", "c1p4 @4 # dropped by r", "c2p5 @5 # dropped by r")
	if s := r.Stats(); s.Forgotten != 1 || r.bytes != 0 {
		t.Errorf("stats %+v, %d bytes buffered, want 1 connection forgotten and none", s, r.bytes)
	}
}

func TestResetWritesInjectedRSTs(t *testing.T) {
	var got []capture.Frame
	var comments []string
	w := writerFunc(func(f capture.Frame, c string) error {
		got, comments = append(got, f), append(comments, c)
		return nil
	})
	r := New(w, Options{All: true, Link: decode.LinkRaw})
	client, server := netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.1.1:80")
	v := &rules.Verdict{Decision: rules.Decision{Action: rules.Reset, Reset: rules.ToServer, Rule: 0, RuleName: "reset-on-fin"}, Obs: statetrack.Observation{ConnID: 1}}
	v.Obs.Seg = statetrack.Segment{Src: client, Dst: server, Seq: 7, Flags: statetrack.FIN | statetrack.ACK}
	r.Queue(0).Arrived(&execute.Packet{Data: []byte("fin"), Len: 3}, v, t0)
	if !slices.Equal(comments, []string{"reset by reset-on-fin", "RST injected by reset-on-fin"}) {
		t.Fatalf("comments %q", comments)
	}
	var seg statetrack.Segment
	if _, err := decode.NewParser().DecodeFrame(got[1].Data, got[1].OrigLen, decode.LinkRaw, &seg); err != nil || seg.Flags != statetrack.RST || seg.Seq != 7 || seg.Src != client {
		t.Errorf("RST written: %+v, %v", seg, err)
	}
}

type writerFunc func(capture.Frame, string) error

func (f writerFunc) Write(fr capture.Frame, c string) error { return f(fr, c) }

func TestWriteErrorStopsRecording(t *testing.T) {
	w := &lines{err: errors.New("disk full")}
	r := New(w, Options{All: true})
	tp := r.Queue(0)
	show(tp, 1, 1, rules.Accept)
	w.err = nil
	show(tp, 1, 2, rules.Accept)
	w.check(t)
	if s := r.Stats(); s.Err == nil || s.Packets != 0 {
		t.Errorf("stats %+v, want the write error", s)
	}
}

func TestComment(t *testing.T) {
	for _, c := range []struct {
		d    rules.Decision
		want string
	}{
		{rules.Decision{Action: rules.Drop}, "dropped by x"},
		{rules.Decision{Action: rules.Delay, Hold: 300*time.Millisecond + 1234567}, "held 301.235ms by x"},
		{rules.Decision{Action: rules.Duplicate, Copies: 1, After: 3 * time.Second}, "duplicated by x (1 copy after 3s)"},
		{rules.Decision{Action: rules.Duplicate, Copies: 2, After: time.Second}, "duplicated by x (2 copies after 1s)"},
		{rules.Decision{Action: rules.Reset}, "reset by x"},
		{rules.Decision{Action: rules.Blackhole, Dark: rules.Both, For: 2 * time.Second}, "blackhole both by x for 2s"},
		{rules.Decision{Action: rules.Accept, Dark: rules.ToClient}, "blackhole to-client by x"},
		{rules.Decision{Action: rules.Blackhole}, "dropped by x (connection dark)"},
	} {
		if got := Comment(&c.d, "x"); got != c.want {
			t.Errorf("%s: %q, want %q", c.d.Action, got, c.want)
		}
	}
}

// TestTouchedConnectionsOutliveTheBounds: the bounds are on what is
// buffered for untouched connections; a touched connection buffers
// nothing, so no number of later connections, nor of bytes buffered for
// them, makes its later packets missing.
func TestTouchedConnectionsOutliveTheBounds(t *testing.T) {
	w := &lines{}
	r := New(w, Options{MaxConns: 2, MaxBytes: 9}) // each packet is 4 bytes
	tp := r.Queue(0)
	show(tp, 1, 1, rules.Drop)
	show(tp, 2, 2, rules.Accept)
	show(tp, 3, 3, rules.Accept)
	show(tp, 2, 4, rules.Accept)
	show(tp, 4, 5, rules.Accept)
	show(tp, 1, 6, rules.Accept) // the close of connection 1
	w.check(t, "c1p1 @1 # dropped by r", "c1p6 @6")
}

// TestGoneConnectionsFreed: a connection that left the tracker's table
// takes its entry with it, buffered packets and all: what is buffered is
// then only of live connections, and no bound forgets anything for the
// ended ones.
func TestGoneConnectionsFreed(t *testing.T) {
	w := &lines{}
	r := New(w, Options{MaxConns: 2})
	tp, gone := r.Queue(0), r.OnGone(0)
	show(tp, 1, 1, rules.Drop)
	show(tp, 2, 2, rules.Accept)
	show(r.Queue(1), 2, 3, rules.Accept) // another queue's connection 2
	gone(statetrack.Gone{ConnID: 1})
	gone(statetrack.Gone{ConnID: 2})
	if len(r.touched) != 0 || len(r.waiting) != 1 || r.bytes != 4 {
		t.Errorf("%d touched, %d buffered connections, %d bytes left, want queue 1's connection 2 only", len(r.touched), len(r.waiting), r.bytes)
	}
	show(tp, 3, 4, rules.Accept)
	show(tp, 4, 5, rules.Accept)
	show(tp, 4, 6, rules.Drop)
	w.check(t, "c1p1 @1 # dropped by r", "c4p5 @5", "c4p6 @6 # dropped by r")
	if s := r.Stats(); s.Forgotten != 1 { // queue 1's connection 2, least recently seen
		t.Errorf("stats %+v, want 1 connection forgotten", s)
	}
}

// TestPanicStopsRecordingNotTraffic: a panic while recording (here the
// Writer's) ends the recording with an error, not the queue that called
// the Tap.
func TestPanicStopsRecordingNotTraffic(t *testing.T) {
	w := writerFunc(func(capture.Frame, string) error { panic("boom") })
	r := New(w, Options{All: true})
	tp := r.Queue(0)
	show(tp, 1, 1, rules.Accept)
	dup := &rules.Verdict{Decision: rules.Decision{Action: rules.Duplicate, Copies: 1, Rule: 0, RuleName: "r"}, Obs: statetrack.Observation{ConnID: 1}}
	tp.CopySent(&execute.Packet{Data: []byte("c1p1"), Len: 4}, dup, 1, t0)
	if s := r.Stats(); s.Err == nil || s.Err.Error() != "recording panicked: boom" {
		t.Errorf("stats %+v, want the panic as the error", s)
	}
}
