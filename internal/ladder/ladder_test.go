package ladder

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// twoConnections is a lost first SYN and a lost final ACK on connection 1
// (client ISN 1000, server ISN 5000), interleaved with a second connection
// that opens later.
func twoConnections() []events.Event {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const (
		client, server = statetrack.Client, statetrack.Server
		S, A, F        = statetrack.SYN, statetrack.ACK, statetrack.FIN
	)
	ev := func(id uint64, ms int, from statetrack.Side, kind statetrack.Kind, nth uint32, flags statetrack.Flags, seq, ack uint32, cs, ss statetrack.State) events.Event {
		c := netip.MustParseAddrPort("198.18.1.2:40000")
		if id == 2 {
			c = netip.MustParseAddrPort("198.18.1.2:40001")
		}
		return events.Event{Time: t0.Add(time.Duration(ms) * time.Millisecond), Client: c, Server: netip.MustParseAddrPort("198.19.2.2:8080"),
			ConnID: id, From: from, Kind: kind, Nth: nth, Flags: flags, Seq: seq, Ack: ack, ClientState: cs, ServerState: ss}
	}
	evs := []events.Event{
		ev(1, 0, client, statetrack.Syn, 1, S, 1000, 0, statetrack.SynSent, statetrack.Listen),
		ev(1, 1020, client, statetrack.Syn, 2, S, 1000, 0, statetrack.SynSent, statetrack.SynRcvd),
		ev(2, 1020, client, statetrack.Syn, 1, S, 7000, 0, statetrack.SynSent, statetrack.SynRcvd),
		ev(1, 1021, server, statetrack.SynAck, 1, S|A, 5000, 1001, statetrack.Established, statetrack.SynRcvd),
		ev(1, 1031, server, statetrack.Fin, 1, F|A, 5001, 1002, statetrack.TimeWait, statetrack.LastAck),
		ev(1, 1032, client, statetrack.FinalAck, 1, A, 1002, 5002, statetrack.TimeWait, statetrack.LastAck),
		ev(1, 1240, client, 0, 0, 0, 0, 0, statetrack.TimeWait, statetrack.Closed),
	}
	evs[0].Action, evs[0].Rule = rules.Drop, "lose-first-syn"
	evs[1].Retransmission = true
	evs[4].Closer = statetrack.Passive
	evs[5].Action, evs[5].Rule = rules.Delay, "slow-final-ack"
	evs[5].Delay = 200 * time.Millisecond
	evs[6].Reason = events.Released
	return evs
}

func TestWrite(t *testing.T) {
	var b strings.Builder
	Write(&b, twoConnections(), Options{})
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	// Connection 1: title, header, 6 events; a blank line; connection 2:
	// title, header, 1 event.
	if len(lines) != 8+1+3 {
		t.Fatalf("ladder has %d lines, want 12:\n%s", len(lines), b.String())
	}
	for i, want := range map[int][]string{
		0:  {"connection 198.18.1.2:40000->198.19.2.2:8080 (id 1;"},
		2:  {"+0.000", "SYN_SENT", "── syn #1 S ─", "─✗ LISTEN", "seq 0 ", "✗ dropped by lose-first-syn"},
		3:  {"+1.020", "─▶ SYN_RCVD", "retransmission 1.020 s after the drop of syn #1"},
		4:  {"◀─", " syn-ack #1 S. ──", "seq 0 ack 1"}, // relative to the server's ISN, acking the client's
		5:  {"TIME_WAIT    ◀", "fin #1 F.", "seq 1 ack 2", "passive close"},
		6:  {"final-ack #1 . ─", "─▶ LAST_ACK", "seq 2 ack 2", "⧗ delayed 200ms by slow-final-ack"},
		7:  {"+1.240", "· released", "CLOSED"},
		8:  {""},
		9:  {"connection 198.18.1.2:40001->198.19.2.2:8080"},
		11: {"+0.000", "syn #1 S", "seq 0"}, // times and ISNs of its own
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("ladder line %d = %q, want it to contain %q", i, lines[i], w)
			}
		}
	}
	for i, l := range lines {
		if l != strings.TrimRight(l, " ") {
			t.Errorf("ladder line %d has trailing spaces: %q", i, l)
		}
	}
	// The columns line up: every server state starts at the same place.
	serverCol := 10 + stateWidth + 1 + arrowWidth + 1
	for _, i := range []int{2, 3, 4, 5, 6, 7, 11} {
		r := []rune(lines[i])
		if len(r) < serverCol || r[serverCol-1] != ' ' || r[serverCol] == ' ' {
			t.Errorf("ladder line %d = %q, want the server state at column %d", i, lines[i], serverCol)
		}
	}
}

func TestWriteNothing(t *testing.T) {
	var b strings.Builder
	Write(&b, nil, Options{})
	if b.String() != "(no events)\n" {
		t.Errorf("Write(nil) = %q", b.String())
	}
}

func TestWriteASCII(t *testing.T) {
	var b strings.Builder
	Write(&b, twoConnections(), Options{ASCII: true})
	for i, r := range b.String() {
		if r >= 0x80 {
			t.Fatalf("ASCII ladder has %q at byte %d:\n%s", r, i, b.String())
		}
	}
	for _, want := range []string{"-- syn #1 S ----", "--x LISTEN", "x dropped by lose-first-syn", "<------", "~ delayed 200ms", ". released"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("ASCII ladder lacks %q:\n%s", want, b.String())
		}
	}
}

func TestWriteColor(t *testing.T) {
	var plain, colored strings.Builder
	Write(&plain, twoConnections(), Options{})
	Write(&colored, twoConnections(), Options{Color: true})
	pl, cl := strings.Split(plain.String(), "\n"), strings.Split(colored.String(), "\n")
	if len(pl) != len(cl) {
		t.Fatalf("coloured ladder has %d lines, plain %d", len(cl), len(pl))
	}
	// Only the faulted packets' lines are coloured: red for the drop,
	// yellow for the delay.
	for i := range pl {
		want := pl[i]
		switch {
		case strings.Contains(pl[i], "dropped by"):
			want = colorDropped + pl[i] + colorReset
		case strings.Contains(pl[i], "delayed 200ms by"):
			want = colorHeld + pl[i] + colorReset
		}
		if cl[i] != want {
			t.Errorf("coloured line %d = %q, want %q", i, cl[i], want)
		}
	}
}

func TestProvoked(t *testing.T) {
	const client, server = statetrack.Client, statetrack.Server
	ev := func(from statetrack.Side, k statetrack.Kind) *events.Event { return &events.Event{From: from, Kind: k} }
	for _, tc := range []struct {
		fault, retrans *events.Event
		want           bool
	}{
		{ev(client, statetrack.Syn), ev(client, statetrack.Syn), true},
		{ev(client, statetrack.FinalAck), ev(server, statetrack.Fin), true},
		{ev(server, statetrack.SynAck), ev(client, statetrack.Syn), true},
		{ev(client, statetrack.HandshakeAck), ev(server, statetrack.SynAck), true},
		{ev(server, statetrack.Fin), ev(client, statetrack.Data), false},
		{ev(server, statetrack.Fin), ev(server, statetrack.Data), false},
		{ev(client, statetrack.Syn), ev(server, statetrack.SynAck), false},
	} {
		if got := provoked(tc.fault, tc.retrans); got != tc.want {
			t.Errorf("provoked(%s %s, %s %s) = %v, want %v", tc.fault.From, tc.fault.Kind, tc.retrans.From, tc.retrans.Kind, got, tc.want)
		}
	}
}
