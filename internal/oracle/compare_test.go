package oracle

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// script turns lines "from kind client-state server-state" (or "state
// REASON client server") into one connection's events, 1 ms apart; conn
// is "client:port->server:port".
func script(conn string, id uint64, lines ...string) []events.Event {
	client, server, _ := strings.Cut(conn, "->")
	var evs []events.Event
	for i, l := range lines {
		f := strings.Fields(l)
		e := events.Event{Time: t0.Add(time.Duration(i) * time.Millisecond), ConnID: id,
			Client: netip.MustParseAddrPort(client), Server: netip.MustParseAddrPort(server),
			ClientState: must(statetrack.ParseState(f[2])), ServerState: must(statetrack.ParseState(f[3]))}
		if f[0] == "state" {
			e.Reason = must(events.ParseReason(f[1]))
		} else {
			e.From, e.Kind = must(statetrack.ParseSide(f[0])), must(statetrack.ParseKind(f[1]))
		}
		evs = append(evs, e)
	}
	return evs
}

// must returns v, panicking on err (for the scripts' spellings).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// ab and cb are two connections for the tests that need any.
const (
	ab = "198.18.1.2:40000->198.19.2.2:8080"
	cb = "198.18.1.3:40000->198.19.2.2:8080"
)

var handshake = []string{
	"client syn SYN_SENT LISTEN",
	"server syn-ack ESTABLISHED SYN_RCVD",
	"client handshake-ack ESTABLISHED ESTABLISHED",
}

func stateNames(steps []Step) string { return strings.Join(names(steps), ",") }

func TestProject(t *testing.T) {
	cases := map[string]struct {
		lines []string
		want  string
	}{
		"four-way close": {[]string{
			"client fin FIN_WAIT_1 CLOSE_WAIT",
			"server fin-ack FIN_WAIT_2 CLOSE_WAIT",
			"server fin TIME_WAIT LAST_ACK",
			"client final-ack TIME_WAIT CLOSED",
		}, "SYN_SENT,SYN_RECV,ESTABLISHED,FIN_WAIT,CLOSE_WAIT,LAST_ACK,TIME_WAIT"},
		"half-close: data acks the FIN": {[]string{
			"client fin FIN_WAIT_1 CLOSE_WAIT",
			"server data FIN_WAIT_2 CLOSE_WAIT",
			"client ack FIN_WAIT_2 CLOSE_WAIT",
			"server fin TIME_WAIT LAST_ACK",
			"client final-ack TIME_WAIT CLOSED",
		}, "SYN_SENT,SYN_RECV,ESTABLISHED,FIN_WAIT,CLOSE_WAIT,LAST_ACK,TIME_WAIT"},
		"FINs crossing beyond the router": {[]string{
			"server fin CLOSE_WAIT FIN_WAIT_1",
			"client fin CLOSING CLOSING",
			"server final-ack TIME_WAIT CLOSING",
			"client final-ack TIME_WAIT TIME_WAIT",
		}, "SYN_SENT,SYN_RECV,ESTABLISHED,FIN_WAIT,LAST_ACK,TIME_WAIT"},
		"lost final ACK: the retransmitted FIN's ACK ends LAST_ACK": {[]string{
			"client fin FIN_WAIT_1 CLOSE_WAIT",
			"server fin TIME_WAIT LAST_ACK",
			"client final-ack TIME_WAIT LAST_ACK", // dropped
			"server fin TIME_WAIT LAST_ACK",
			"client final-ack TIME_WAIT CLOSED",
		}, "SYN_SENT,SYN_RECV,ESTABLISHED,FIN_WAIT,LAST_ACK,TIME_WAIT"},
		"retransmitted FIN is not the second": {[]string{
			"client fin FIN_WAIT_1 ESTABLISHED", // dropped
			"client fin FIN_WAIT_1 CLOSE_WAIT",
			"server fin TIME_WAIT LAST_ACK",
			"client final-ack TIME_WAIT CLOSED",
		}, "SYN_SENT,SYN_RECV,ESTABLISHED,FIN_WAIT,LAST_ACK,TIME_WAIT"},
		"abort": {[]string{
			"client rst CLOSED CLOSED",
			"state time-wait-expired CLOSED CLOSED",
		}, "SYN_SENT,SYN_RECV,ESTABLISHED,CLOSE"},
	}
	for name, c := range cases {
		got := stateNames(Project(script(ab, 1, append(slices.Clone(handshake), c.lines...)...)))
		if got != c.want {
			t.Errorf("%s: Project = %s, want %s", name, got, c.want)
		}
	}
}

// TestProjectDataCompletesHandshake: the client's first data in place of
// the third ACK establishes the server, as conntrack sees it (found in a
// 10,000-connection run, where two connections stopped at SYN_RECV); so
// does the state event of a quiet handshake, whose third ACK is unseen
// (no other state event does).
func TestProjectDataCompletesHandshake(t *testing.T) {
	closing := []string{
		"client fin FIN_WAIT_1 CLOSE_WAIT",
		"server fin TIME_WAIT LAST_ACK",
		"client final-ack TIME_WAIT CLOSED",
	}
	for _, c := range []struct {
		third, want string
	}{
		{"client data ESTABLISHED ESTABLISHED", "SYN_SENT,SYN_RECV,ESTABLISHED,FIN_WAIT,LAST_ACK,TIME_WAIT"},
		{"state quiet-handshake ESTABLISHED ESTABLISHED", "SYN_SENT,SYN_RECV,ESTABLISHED,FIN_WAIT,LAST_ACK,TIME_WAIT"},
		{"state released ESTABLISHED ESTABLISHED", "SYN_SENT,SYN_RECV"},
	} {
		lines := append([]string{"client syn SYN_SENT SYN_RCVD", "server syn-ack ESTABLISHED SYN_RCVD", c.third}, closing...)
		if got := stateNames(Project(script(ab, 1, lines...))); got != c.want {
			t.Errorf("%s: Project = %s, want %s", c.third, got, c.want)
		}
	}
}

// ct turns "TYPE STATE" lines into one conntrack entry's events.
func ct(conn string, id uint64, lines ...string) []CTEvent {
	src, dst, _ := strings.Cut(conn, "->")
	var out []CTEvent
	for i, l := range lines {
		typ, state, _ := strings.Cut(l, " ")
		out = append(out, CTEvent{Time: t0.Add(time.Duration(i) * time.Millisecond), Type: typ, State: state,
			Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst), ID: id})
	}
	return out
}

func TestCompare(t *testing.T) {
	closed := append(slices.Clone(handshake),
		"client fin FIN_WAIT_1 CLOSE_WAIT", "server fin-ack FIN_WAIT_2 CLOSE_WAIT",
		"server fin TIME_WAIT LAST_ACK", "client final-ack TIME_WAIT CLOSED",
		"state time-wait-expired CLOSED CLOSED")
	full := []string{"NEW SYN_SENT", "UPDATE SYN_RECV", "UPDATE ESTABLISHED", "UPDATE FIN_WAIT", "UPDATE CLOSE_WAIT", "UPDATE LAST_ACK", "UPDATE TIME_WAIT", "DESTROY TIME_WAIT"}
	conn := func(i int) string { return fmt.Sprintf("198.18.1.2:%d->198.19.2.2:8080", 40000+i) }
	var evs []events.Event
	var cts []CTEvent
	add := func(i int, tracker []string, conntrack []string) {
		if tracker != nil {
			evs = append(evs, script(conn(i), uint64(i), tracker...)...)
		}
		if conntrack != nil {
			cts = append(cts, ct(conn(i), uint64(100+i), conntrack...)...)
		}
	}
	add(0, closed, full)
	add(1, closed, []string{"NEW SYN_SENT", "UPDATE SYN_RECV", "UPDATE ESTABLISHED", "UPDATE LAST_ACK", "UPDATE LAST_ACK", "UPDATE TIME_WAIT", "DESTROY TIME_WAIT"})
	add(2, closed, nil)
	add(3, closed, []string{"NEW SYN_SENT", "UPDATE SYN_RECV", "UPDATE ESTABLISHED", "UPDATE CLOSE", "DESTROY CLOSE"})
	add(4, closed, full[:len(full)-1])
	add(5, closed[:len(closed)-1], full)
	add(6, closed, []string{"NEW SYN_SENT", "UPDATE SYN_RECV", "UPDATE ESTABLISHED", "UPDATE FIN_WAIT", "UPDATE LAST_ACK", "UPDATE CLOSE_WAIT", "UPDATE TIME_WAIT", "DESTROY TIME_WAIT"})
	want := []Class{Agree, Coalesced, Unmatched, Differ, NotDestroyed, NotEnded, Differ}

	vs := Compare(evs, cts, true)
	if len(vs) != len(want) {
		t.Fatalf("%d verdicts, want %d: %v", len(vs), len(want), vs)
	}
	for i, v := range vs {
		if v.Conn != conn(i) || v.Class != want[i] || v.Shape != ClientClose {
			t.Errorf("verdict %d = %s, want %s %s %s", i, v, conn(i), ClientClose, want[i])
		}
	}
	s := Summarize(vs)
	if s.Counts[ClientClose][Agree] != 1 || s.Counts[ClientClose][Differ] != 2 {
		t.Errorf("summary %v", s.Counts[ClientClose])
	}
	if tab := s.Table(); !strings.Contains(tab, "| client-close | 1 | 1 | 0 | 0 | 0 | 1 | 2 | 1 | 1 |") {
		t.Errorf("table lacks the client-close row:\n%s", tab)
	}
	leg := s.Legend()
	for _, want := range []string{"- agree (1): the same states", "- differ (2): a disagreement", "- not ended (1): a disagreement"} {
		if !strings.Contains(leg, want) {
			t.Errorf("legend lacks %q:\n%s", want, leg)
		}
	}
	if strings.Contains(leg, "reopened") {
		t.Errorf("legend lists a class that did not occur:\n%s", leg)
	}
}

// TestCompareEarlyCloseWait: after the client's FIN the server's delayed
// ACK of data (not of the FIN) passes; conntrack reads it as the FIN's ACK
// (a run without the quiet close: its ACK cannot pass unseen).
func TestCompareEarlyCloseWait(t *testing.T) {
	c := "198.18.1.2:40000->198.19.2.2:8086"
	lines := append(slices.Clone(handshake),
		"client fin FIN_WAIT_1 CLOSE_WAIT", "server ack FIN_WAIT_1 CLOSE_WAIT",
		"server fin TIME_WAIT LAST_ACK", "client final-ack TIME_WAIT CLOSED", "state time-wait-expired CLOSED CLOSED")
	evs := script(c, 1, lines...)
	evs[3].Seq, evs[3].Len = 1000, 0                // the FIN: its ACK is 1001
	evs[4].Ack, evs[4].Flags = 1000, statetrack.ACK // acks the data before it
	if vs := Compare(evs, closeWaitCT(c), false); len(vs) != 1 || vs[0].Class != EarlyCloseWait {
		t.Errorf("verdicts %v, want early close-wait", vs)
	}
	evs[4].Ack = 1001 // now it does ack the FIN: the tracker's projection lacks CLOSE_WAIT wrongly
	if vs := Compare(evs, closeWaitCT(c), false); len(vs) != 1 || vs[0].Class != Differ {
		t.Errorf("verdicts %v, want differ", vs)
	}
	// The two trackers saw the server's ACK and the client's FIN in
	// opposite orders (two CPUs), or the tracker not at all (a quiet data
	// phase): the server acknowledged the FIN only with its own.
	evs[4].Ack = 1000
	evs[3], evs[4] = evs[4], evs[3]
	if vs := Compare(evs, closeWaitCT(c), false); len(vs) != 1 || vs[0].Class != EarlyCloseWait {
		t.Errorf("ACK before the FIN: verdicts %v, want early close-wait", vs)
	}
	unseen := slices.Delete(slices.Clone(evs), 3, 4)
	if vs := Compare(unseen, closeWaitCT(c), false); len(vs) != 1 || vs[0].Class != EarlyCloseWait {
		t.Errorf("ACK unseen: verdicts %v, want early close-wait", vs)
	}
}

// closeWaitCT is a conntrack entry's four-way close: FIN_WAIT, then
// CLOSE_WAIT on a segment of the other side.
func closeWaitCT(conn string) []CTEvent {
	return ct(conn, 7, "NEW SYN_SENT", "UPDATE SYN_RECV", "UPDATE ESTABLISHED", "UPDATE FIN_WAIT", "UPDATE CLOSE_WAIT",
		"UPDATE LAST_ACK", "UPDATE TIME_WAIT", "DESTROY TIME_WAIT")
}

// TestCompareQuietClose: a quiet close leaves the ACK of the first FIN
// and a half-close's data unseen; conntrack sees them and goes to
// CLOSE_WAIT. That is the quiet close's class only when the run had it in
// force and the first FIN could start one: accepted, not a
// retransmission, both endpoints ESTABLISHED before it.
func TestCompareQuietClose(t *testing.T) {
	c := "198.18.1.2:40000->198.19.2.2:8084"
	quietHandshake := []string{"client syn SYN_SENT LISTEN", "server syn-ack ESTABLISHED SYN_RCVD",
		"state quiet-handshake ESTABLISHED ESTABLISHED"}
	closing := []string{"client fin FIN_WAIT_1 CLOSE_WAIT", "server fin TIME_WAIT LAST_ACK",
		"client final-ack TIME_WAIT CLOSED", "state time-wait-expired CLOSED CLOSED"}
	evs := script(c, 1, append(quietHandshake, closing...)...)
	cases := []struct {
		name       string
		edit       func([]events.Event) []events.Event
		quietClose bool
		want       Class
	}{
		{"quiet", func(evs []events.Event) []events.Event { return evs }, true, QuietClose},
		{"quiet close not in force", func(evs []events.Event) []events.Event { return evs }, false, EarlyCloseWait},
		{"the FIN retransmitted", func(evs []events.Event) []events.Event {
			evs[3].Retransmission = true
			return evs
		}, true, EarlyCloseWait},
		{"the first FIN dropped", func(evs []events.Event) []events.Event {
			dropped := evs[3]
			dropped.Rule, dropped.Action, dropped.ServerState = "lost-fin", rules.Drop, statetrack.Established
			return slices.Insert(evs, 3, dropped)
		}, true, EarlyCloseWait},
	}
	for _, k := range cases {
		vs := Compare(k.edit(slices.Clone(evs)), closeWaitCT(c), k.quietClose)
		if len(vs) != 1 || vs[0].Class != k.want {
			t.Errorf("%s: verdicts %v, want %s", k.name, vs, k.want)
		}
	}
	if !QuietClose.Explained() || Unmatched.Explained() {
		t.Error("the quiet close must be explained, unmatched not")
	}
}

// TestCompareReopened: conntrack follows a new incarnation in the entry
// of the old one (a SYN in TIME_WAIT reopens it); the tracker replaces
// the connection.
func TestCompareReopened(t *testing.T) {
	c := "198.18.1.2:40000->198.19.2.2:8081"
	serverClose := []string{"server fin CLOSE_WAIT FIN_WAIT_1", "client fin LAST_ACK TIME_WAIT", "server final-ack CLOSED TIME_WAIT"}
	first := append(slices.Clone(handshake), serverClose...)
	first = append(first, "state replaced CLOSED TIME_WAIT")
	second := append(slices.Clone(handshake), serverClose...)
	second = append(second, "state time-wait-expired CLOSED CLOSED")
	evs := append(script(c, 1, first...), script(c, 2, second...)...)
	story := []string{"UPDATE SYN_RECV", "UPDATE ESTABLISHED", "UPDATE FIN_WAIT", "UPDATE LAST_ACK", "UPDATE TIME_WAIT"}
	lines := append([]string{"NEW SYN_SENT"}, story...)
	lines = append(lines, "UPDATE SYN_SENT")
	lines = append(lines, story...)
	lines = append(lines, "DESTROY TIME_WAIT")
	vs := Compare(evs, ct(c, 7, lines...), true)
	if len(vs) != 2 || vs[0].Class != Reopened || vs[1].Class != Agree || vs[0].Shape != ServerClose {
		t.Errorf("verdicts %v, want reopened, then agree", vs)
	}
}

func TestCompareIncarnationsInOrder(t *testing.T) {
	c := "198.18.1.2:40000->198.19.2.2:8083"
	abort := append(slices.Clone(handshake), "client rst CLOSED CLOSED")
	evs := append(script(c, 1, abort...), script(c, 2, handshake...)...)
	cts := append(ct(c, 7, "NEW SYN_SENT", "UPDATE SYN_RECV", "UPDATE ESTABLISHED", "UPDATE CLOSE", "DESTROY CLOSE"),
		ct(c, 8, "NEW SYN_SENT", "UPDATE SYN_RECV", "UPDATE ESTABLISHED")...)
	vs := Compare(evs, cts, true)
	if len(vs) != 2 || vs[0].Class != Agree || vs[1].Class != NotDestroyed || vs[0].Shape != Abort {
		t.Errorf("verdicts %v, want abort agree, then the second incarnation not destroyed", vs)
	}
}
