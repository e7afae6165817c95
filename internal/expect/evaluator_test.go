package expect

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// t0 is when the test runs start.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// ms is t0 plus n milliseconds.
func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

// addrs are connection id's endpoints.
func addrs(id uint64) (client, server netip.AddrPort) {
	return netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), uint16(40000+id)), netip.AddrPortFrom(netip.MustParseAddr("198.18.1.1"), 8080)
}

func connName(id uint64) string { return fmt.Sprintf("198.18.0.1:%d->198.18.1.1:8080", 40000+id) }

// pkt is the event of a packet of kind from a side of connection id at
// time at, with both states after it.
func pkt(at time.Time, id uint64, from statetrack.Side, kind statetrack.Kind, nth uint32, client, server statetrack.State) *events.Event {
	c, s := addrs(id)
	return &events.Event{Time: at, ConnID: id, Client: c, Server: s, From: from, Kind: kind, Nth: nth,
		ClientState: client, ServerState: server}
}

// fault marks e as acted on by rule (dropped).
func fault(e *events.Event, rule string) *events.Event {
	e.Rule, e.Action = rule, rules.Drop
	return e
}

// gone is the event of connection id leaving the table at at.
func gone(at time.Time, id uint64, client, server statetrack.State) *events.Event {
	c, s := addrs(id)
	return &events.Event{Time: at, ConnID: id, Client: c, Server: s, ClientState: client, ServerState: server,
		Reason: events.Gone(statetrack.IdleExpired)}
}

// released is the event of a held packet delivered at at.
func released(at time.Time, id uint64, from statetrack.Side, client, server statetrack.State) *events.Event {
	c, s := addrs(id)
	return &events.Event{Time: at, ConnID: id, Client: c, Server: s, From: from, ClientState: client, ServerState: server,
		Reason: events.Released}
}

const (
	client = statetrack.Client
	server = statetrack.Server
)

// evaluate feeds evs to an evaluator of the one check c and returns its
// outcome at end (the zero time: the last event's).
func evaluate(t *testing.T, c Check, end time.Time, evs ...*events.Event) Outcome {
	t.Helper()
	ev := New([]Expectation{{Name: "x", Check: c}})
	for _, e := range evs {
		ev.Emit(*e)
	}
	os := ev.End(end, map[string]uint64{"r": 2})
	if len(os) != 1 {
		t.Fatalf("%d outcomes, want 1", len(os))
	}
	return os[0]
}

// handshake is connection id's lost first SYN and its retransmission
// after gap, answered.
func lostSyn(id uint64, start int, gap int) []*events.Event {
	return []*events.Event{
		fault(pkt(ms(start), id, client, statetrack.Syn, 1, statetrack.SynSent, statetrack.Closed), "r"),
		pkt(ms(start+gap), id, client, statetrack.Syn, 2, statetrack.SynSent, statetrack.SynRcvd),
		pkt(ms(start+gap+1), id, server, statetrack.SynAck, 1, statetrack.Established, statetrack.SynRcvd),
	}
}

func TestFollowsHoldsWithTheMeasuredGaps(t *testing.T) {
	evs := append(lostSyn(1, 0, 1020), lostSyn(2, 500, 1100)...)
	o := evaluate(t, &Follows{Rule: "r", Packet: statetrack.Syn, From: ptr(client), Within: 2 * time.Second}, time.Time{}, evs...)
	if !o.Holds || o.Measured.Firings != 2 || o.Measured.Reactions != 2 ||
		o.Measured.GapMin != 1020*time.Millisecond || o.Measured.GapMax != 1100*time.Millisecond {
		t.Fatalf("outcome %+v, want 2 firings followed after 1.02s and 1.1s", o)
	}
	if g := o.Measured.Gaps[0]; g.Conn != connName(1) || !g.At.Equal(ms(0)) || g.Gap != 1020*time.Millisecond {
		t.Errorf("first gap %+v", g)
	}
	if o.Figure != "2 of 2 firings followed, after 1.02s to 1.1s" {
		t.Errorf("figure %q", o.Figure)
	}
}

func TestFollowsFailsWhenTheReactionIsLate(t *testing.T) {
	evs := append(lostSyn(1, 0, 1000), lostSyn(2, 100, 3000)...)
	o := evaluate(t, &Follows{Rule: "r", Packet: statetrack.Syn, Within: 2 * time.Second}, time.Time{}, evs...)
	if o.Holds || o.Failures != 1 || o.Measured.Reactions != 1 {
		t.Fatalf("outcome %+v, want one late reaction", o)
	}
	if ce := o.CounterExamples[0]; ce.Conn != connName(2) || !ce.At.Equal(ms(100)) || !strings.Contains(ce.What, "no reaction within 2s") {
		t.Errorf("counter-example %+v, want connection 2's firing at +100ms", ce)
	}
}

// A reaction of the wrong sender does not count; a firing still waiting
// when the run ends fails.
func TestFollowsFailsWithoutTheReaction(t *testing.T) {
	evs := []*events.Event{
		fault(pkt(ms(0), 1, client, statetrack.FinalAck, 1, statetrack.TimeWait, statetrack.LastAck), "r"),
		pkt(ms(200), 1, client, statetrack.Fin, 1, statetrack.TimeWait, statetrack.LastAck),
	}
	o := evaluate(t, &Follows{Rule: "r", Packet: statetrack.Fin, From: ptr(server), Within: time.Second}, ms(500), evs...)
	if o.Holds || o.Failures != 1 || !strings.Contains(o.CounterExamples[0].What, "in the 500ms the connection was still seen") {
		t.Errorf("outcome %+v, want the firing unanswered at the end", o)
	}
}

func TestFollowsState(t *testing.T) {
	delayed := func(release int) []*events.Event {
		return []*events.Event{
			fault(pkt(ms(0), 1, client, statetrack.Syn, 1, statetrack.SynSent, statetrack.Closed), "r"),
			released(ms(release), 1, client, statetrack.SynSent, statetrack.SynRcvd),
		}
	}
	check := &Follows{Rule: "r", State: statetrack.SynRcvd, Within: 400 * time.Millisecond}
	if o := evaluate(t, check, time.Time{}, delayed(300)...); !o.Holds || o.Measured.GapMax != 300*time.Millisecond {
		t.Errorf("released after 300ms: %+v, want it to hold", o)
	}
	if o := evaluate(t, check, time.Time{}, delayed(500)...); o.Holds {
		t.Errorf("released after 500ms: %+v, want it to fail", o)
	}
}

// A rule that never fired leaves nothing to follow: the check holds,
// saying so.
func TestFollowsNeverFired(t *testing.T) {
	o := evaluate(t, &Follows{Rule: "r", Packet: statetrack.Syn, Within: time.Second}, time.Time{},
		pkt(ms(0), 1, client, statetrack.Syn, 1, statetrack.SynSent, statetrack.Closed))
	if !o.Holds || o.Figure != "the rule never fired" {
		t.Errorf("outcome %+v", o)
	}
}

func TestNever(t *testing.T) {
	check := &Never{State: statetrack.LastAck, LongerThan: time.Second}
	closeIn := func(id uint64, start, stay int) []*events.Event {
		return []*events.Event{
			pkt(ms(start), id, server, statetrack.Fin, 1, statetrack.FinWait2, statetrack.LastAck),
			pkt(ms(start+stay), id, client, statetrack.FinalAck, 1, statetrack.TimeWait, statetrack.Closed),
		}
	}
	if o := evaluate(t, check, time.Time{}, append(closeIn(1, 0, 800), closeIn(2, 100, 999)...)...); !o.Holds ||
		o.Measured.Longest != 999*time.Millisecond || o.Measured.LongestConn != connName(2) {
		t.Errorf("stays of 0.8s and 0.999s: %+v, want it to hold with 999ms in connection 2", o)
	}
	o := evaluate(t, check, time.Time{}, append(closeIn(1, 0, 800), closeIn(2, 100, 1500)...)...)
	if o.Holds || o.Failures != 1 {
		t.Fatalf("a stay of 1.5s: %+v, want it to fail", o)
	}
	if ce := o.CounterExamples[0]; ce.Conn != connName(2) || !ce.At.Equal(ms(100)) || ce.What != "the server stayed in LAST_ACK for 1.5s" {
		t.Errorf("counter-example %+v", ce)
	}
}

// An endpoint still in the state at the end counts from its entry to the
// end of the run, also after its connection left the table.
func TestNeverCountsToTheEnd(t *testing.T) {
	check := &Never{State: statetrack.LastAck, LongerThan: time.Second}
	stuck := pkt(ms(0), 1, server, statetrack.Fin, 1, statetrack.FinWait2, statetrack.LastAck)
	if o := evaluate(t, check, ms(900), stuck); !o.Holds {
		t.Errorf("0.9s in LAST_ACK at the end: %+v, want it to hold", o)
	}
	o := evaluate(t, check, ms(5000), stuck, gone(ms(2000), 1, statetrack.FinWait2, statetrack.LastAck))
	if o.Holds || o.Measured.Longest != 5*time.Second || !strings.HasSuffix(o.CounterExamples[0].What, "(still there at the end)") {
		t.Errorf("stuck until the end: %+v, want 5s and a failure", o)
	}
}

func TestReaches(t *testing.T) {
	closed := func(id uint64, client, server statetrack.State) []*events.Event {
		return []*events.Event{
			pkt(ms(int(id)), id, statetrack.Client, statetrack.Syn, 1, statetrack.SynSent, statetrack.Closed),
			pkt(ms(int(id)+10), id, statetrack.Client, statetrack.FinalAck, 1, client, server),
		}
	}
	evs := append(closed(1, statetrack.TimeWait, statetrack.Closed), closed(2, statetrack.TimeWait, statetrack.Closed)...)
	evs = append(evs, closed(3, statetrack.FinWait2, statetrack.CloseWait)...)
	all := &Reaches{State: statetrack.TimeWait, From: ptr(client)}
	o := evaluate(t, all, time.Time{}, evs...)
	if o.Holds || o.Measured.Reached != 2 || o.Measured.Connections != 3 || o.CounterExamples[0].Conn != connName(3) {
		t.Errorf("2 of 3: %+v, want a failure naming connection 3", o)
	}
	if o := evaluate(t, all, time.Time{}, evs[:4]...); !o.Holds {
		t.Errorf("2 of 2: %+v, want it to hold", o)
	}
	if o := evaluate(t, &Reaches{State: statetrack.TimeWait, Connections: 2}, time.Time{}, evs...); !o.Holds {
		t.Errorf("at least 2: %+v, want it to hold", o)
	}
	if o := evaluate(t, &Reaches{State: statetrack.TimeWait, From: ptr(server), Connections: 1}, time.Time{}, evs...); o.Holds {
		t.Errorf("server in TIME_WAIT: %+v, want it to fail", o)
	}
	if o := evaluate(t, all, time.Time{}); o.Holds || o.Figure != "no connection was seen" {
		t.Errorf("no connection: %+v, want it to fail", o)
	}
}

func TestHits(t *testing.T) {
	for _, tc := range []struct {
		min, max *uint64
		holds    bool
	}{
		{ptr[uint64](2), ptr[uint64](2), true},
		{ptr[uint64](1), nil, true},
		{nil, ptr[uint64](1), false},
		{ptr[uint64](3), nil, false},
	} {
		o := evaluate(t, &Hits{Rule: "r", Min: tc.min, Max: tc.max}, time.Time{})
		if o.Holds != tc.holds || o.Measured.Hits != 2 {
			t.Errorf("%s with 2 hits: %+v, want holds=%t", (&Hits{Rule: "r", Min: tc.min, Max: tc.max}), o, tc.holds)
		}
	}
}

func TestExit(t *testing.T) {
	run := func(status *int, exps ...Expectation) []Outcome {
		ev := New(exps)
		if status != nil {
			ev.Exited(*status)
		}
		return ev.End(t0, nil)
	}
	if os := run(ptr(0)); len(os) != 1 || os[0].Name != DefaultExit || !os[0].Holds {
		t.Errorf("status 0, no exit expectation: %+v, want the default to hold", os)
	}
	if os := run(ptr(7)); len(os) != 1 || os[0].Holds || os[0].Figure != "exit status 7" {
		t.Errorf("status 7, no exit expectation: %+v, want the default to fail", os)
	}
	if os := run(nil); len(os) != 0 {
		t.Errorf("no command: %+v, want no default", os)
	}
	x28 := Expectation{Name: "times-out", Check: &Exit{Status: 28}}
	if os := run(ptr(28), x28); len(os) != 1 || !os[0].Holds {
		t.Errorf("status 28 wanted: %+v", os)
	}
	if os := run(ptr(0), x28); os[0].Holds {
		t.Errorf("status 0, 28 wanted: %+v", os)
	}
	nonzero := Expectation{Name: "fails", Check: &Exit{Nonzero: true}}
	if os := run(ptr(1), nonzero); !os[0].Holds {
		t.Errorf("status 1, nonzero wanted: %+v", os)
	}
	if os := run(ptr(0), nonzero); os[0].Holds {
		t.Errorf("status 0, nonzero wanted: %+v", os)
	}
	if os := run(nil, x28); !os[0].Holds || os[0].Skipped == "" {
		t.Errorf("no command, 28 wanted: %+v, want it skipped", os)
	}
}

// The evaluator keeps nothing of a connection that left the table, and at
// most MaxListed counter-examples however many there are.
func TestMemoryIsBoundedByOpenConnections(t *testing.T) {
	exps := []Expectation{
		{Name: "f", Check: &Follows{Rule: "r", Packet: statetrack.Syn, Within: time.Millisecond}},
		{Name: "n", Check: &Never{State: statetrack.SynSent, LongerThan: 0}},
		{Name: "a", Check: &Reaches{State: statetrack.Established}},
	}
	ev := New(exps)
	const conns = 1000
	for id := uint64(1); id <= conns; id++ {
		ev.Emit(*fault(pkt(ms(int(id)), id, client, statetrack.Syn, 1, statetrack.SynSent, statetrack.Closed), "r"))
		ev.Emit(*gone(ms(int(id)+1), id, statetrack.Closed, statetrack.Closed))
	}
	if len(ev.conns) != 0 || len(ev.tallies[0].(*followsTally).pending) != 0 ||
		len(ev.tallies[1].(*neverTally).since) != 0 || len(ev.tallies[2].(*reachesTally).open) != 0 {
		t.Fatal("state of closed connections kept")
	}
	for _, o := range ev.End(time.Time{}, nil) {
		if o.Holds || o.Failures != conns || len(o.CounterExamples) != MaxListed || o.CounterExamples[0].ConnID != 1 {
			t.Errorf("%s: %d failures, %d listed, first %+v; want %d, %d, connection 1", o.Name, o.Failures, len(o.CounterExamples), o.CounterExamples[0], conns, MaxListed)
		}
	}
}

func TestEmitIgnoresUntrackedPackets(t *testing.T) {
	o := evaluate(t, &Reaches{State: statetrack.Closed}, time.Time{}, pkt(ms(0), 0, client, statetrack.Ack, 0, statetrack.Closed, statetrack.Closed))
	if o.Measured.Connections != 0 {
		t.Errorf("an untracked packet counted as a connection: %+v", o)
	}
}

func ptr[T any](v T) *T { return &v }

// Events lost on the way (a full events.Async) are said in every outcome.
func TestLostEventsAreReported(t *testing.T) {
	ev := New([]Expectation{{Name: "h", Check: &Hits{Rule: "r", Min: ptr[uint64](0)}}})
	ev.Lost(3)
	os := ev.End(t0, nil)
	var b strings.Builder
	WriteLines(&b, os)
	if os[0].EventsLost != 3 || b.String() != "expect h: holds: 0 hits (evaluated without 3 lost events)\n" {
		t.Errorf("outcome %+v, line %q", os[0], b.String())
	}
	var s pipeline.Summary
	if r := NewReport(Run{}, s, os); r.Run.EventsLost != 3 {
		t.Errorf("report run %+v, want 3 events lost", r.Run)
	}
}
