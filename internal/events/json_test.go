package events

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestJSONFieldNames pins the stable interface: field names and spellings.
func TestJSONFieldNames(t *testing.T) {
	var b bytes.Buffer
	j := NewJSONLines(&b)
	j.Emit(Event{
		Time:   time.Date(2026, 11, 21, 12, 0, 0, 123456789, time.UTC),
		Client: netip.MustParseAddrPort("[fd00:1::2]:40312"), Server: netip.MustParseAddrPort("[fd00:2::2]:8080"), ConnID: 7,
		From: statetrack.Client, Kind: statetrack.FinalAck, Nth: 2, Retransmission: true, Seq: 1, Ack: 2, Flags: statetrack.ACK,
		ClientState: statetrack.TimeWait, ServerState: statetrack.LastAck, Rule: "r", Action: rules.Drop,
	})
	j.Emit(Event{Reason: Gone(statetrack.TimeWaitExpired), ClientState: statetrack.Closed, ServerState: statetrack.Closed})
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := `{"time":"2026-11-21T12:00:00.123456789Z","conn":"[fd00:1::2]:40312->[fd00:2::2]:8080","conn_id":7,"from":"client","kind":"final-ack","nth":2,"retransmission":true,"seq":1,"ack":2,"flags":".","len":0,"client_state":"TIME_WAIT","server_state":"LAST_ACK","rule":"r","action":"drop"}`
	if lines[0] != want {
		t.Errorf("line 1:\n got %s\nwant %s", lines[0], want)
	}
	if !strings.Contains(lines[1], `"kind":"state"`) || !strings.Contains(lines[1], `"reason":"time-wait-expired"`) {
		t.Errorf("line 2 = %s, want a state event with its reason", lines[1])
	}
}

// sampleEvents are one event of each shape the pipeline emits: every field
// that is written only sometimes is written in one of them.
func sampleEvents() []Event {
	at := time.Date(2026, 11, 21, 12, 0, 0, 5, time.UTC)
	c, s := netip.MustParseAddrPort("198.18.1.2:40000"), netip.MustParseAddrPort("198.19.2.2:8080")
	pkt := func(from statetrack.Side, k statetrack.Kind, f statetrack.Flags) Event {
		return Event{Time: at, Client: c, Server: s, ConnID: 1, From: from, Kind: k, Nth: 1, Seq: 100, Ack: 200, Flags: f,
			Len: 3, ClientState: statetrack.Established, ServerState: statetrack.FinWait1}
	}
	fin := pkt(statetrack.Server, statetrack.Fin, statetrack.FIN|statetrack.ACK)
	fin.Closer, fin.Rule, fin.Action, fin.Copies, fin.After = statetrack.Passive, `odd "name" <&>`, rules.Duplicate, 2, 0
	synAck := pkt(statetrack.Server, statetrack.SynAck, statetrack.SYN|statetrack.ACK)
	synAck.Rule, synAck.Action, synAck.Delay = "slow", rules.Delay, 0 // a hold drawn as 0 with jitter
	accept := pkt(statetrack.Client, statetrack.Syn, statetrack.SYN)
	accept.Rule, accept.Action, accept.Retransmission, accept.NewIncarnation = "pass", rules.Accept, true, true
	bare := pkt(statetrack.Client, statetrack.Data, 0)
	bare.Midstream = true
	released := pkt(statetrack.Client, 0, statetrack.ACK)
	released.Reason = Released
	copyArrived := pkt(statetrack.Server, 0, statetrack.FIN|statetrack.ACK)
	copyArrived.Reason, copyArrived.Closer = Duplicate, statetrack.Active
	rst := pkt(statetrack.Server, statetrack.Rst, statetrack.RST)
	rst.Injected = true
	evs := []Event{fin, synAck, accept, bare, released, copyArrived, rst}
	for _, g := range statetrack.GoneReasons() {
		evs = append(evs, Event{Time: at, Client: c, Server: s, ConnID: 2, Reason: Gone(g),
			ClientState: statetrack.Closed, ServerState: statetrack.TimeWait})
	}
	dark := pkt(statetrack.Client, statetrack.Data, statetrack.ACK)
	dark.Rule, dark.Action, dark.Dark = "vanish", rules.Accept, rules.ToClient
	healed := Event{Time: at, Client: c, Server: s, ConnID: 1, Reason: Healed, Rule: "vanish", Action: rules.Blackhole,
		Dark: rules.Both, ClientState: statetrack.Established, ServerState: statetrack.Established}
	quieted := Event{Time: at, Client: c, Server: s, ConnID: 3, Reason: QuietHandshake,
		ClientState: statetrack.Established, ServerState: statetrack.Established}
	return append(evs, quieted, dark, healed)
}

// TestBlackholeLines: the packet that starts a blackhole names its
// directions; a heal is a state event without a packet.
func TestBlackholeLines(t *testing.T) {
	evs := sampleEvents()
	dark, err := json.Marshal(evs[len(evs)-2])
	if err != nil {
		t.Fatal(err)
	}
	if w := `"rule":"vanish","action":"accept","blackhole":"to-client"}`; !strings.Contains(string(dark), w) {
		t.Errorf("blackhole line %s lacks %s", dark, w)
	}
	healed, err := json.Marshal(evs[len(evs)-1])
	if err != nil {
		t.Fatal(err)
	}
	if w := `"kind":"state","seq":0,"ack":0,"len":0,"client_state":"ESTABLISHED","server_state":"ESTABLISHED","rule":"vanish","action":"blackhole","reason":"healed","blackhole":"both"}`; !strings.Contains(string(healed), w) {
		t.Errorf("healed line %s lacks %s", healed, w)
	}
	darkDrop := evs[len(evs)-2]
	darkDrop.Action, darkDrop.Dark = rules.Blackhole, 0
	for _, c := range []struct {
		e    Event
		want bool
	}{{evs[len(evs)-2], true}, {evs[len(evs)-1], false}, {darkDrop, false}, {evs[0], true}} {
		if got := c.e.Fired(); got != c.want {
			t.Errorf("Fired() = %v for %+v", got, c.e)
		}
	}
	var e Event
	if err := json.Unmarshal([]byte(`{"time":"2026-11-21T12:00:00Z","conn":"198.18.1.2:1->198.19.2.2:2","conn_id":1,"kind":"state","client_state":"CLOSED","server_state":"CLOSED","reason":"healed","blackhole":"left"}`), &e); err == nil ||
		!strings.Contains(err.Error(), `blackhole: unknown direction "left"`) {
		t.Errorf("bad direction: %v", err)
	}
}

// TestJSONRoundTrip: an event read back from its line is the event, and
// fields are omitted exactly where the stream omits them.
func TestJSONRoundTrip(t *testing.T) {
	var b bytes.Buffer
	j := NewJSONLines(&b)
	evs := sampleEvents()
	for _, e := range evs {
		j.Emit(e)
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != len(evs) {
		t.Fatalf("%d lines for %d events", len(lines), len(evs))
	}
	for i, l := range lines {
		var got Event
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Errorf("line %d: %v: %s", i+1, err, l)
			continue
		}
		if got != evs[i] {
			t.Errorf("line %d read back as\n%+v\nwant\n%+v", i+1, got, evs[i])
		}
	}
	for i, want := range map[int][]string{
		0: {`"closer":"passive"`, `"rule":"odd \"name\" <&>"`, `"action":"duplicate"`, `"after":"0s","copies":2`},
		1: {`"action":"delay","delay":"0s"}`},
		2: {`"retransmission":true`, `"action":"accept"`, `"new_incarnation":true}`},
		3: {`"flags":"none"`, `"midstream":true`},
		4: {`"from":"client","kind":"state","nth":1`, `"flags":"."`, `"reason":"released"`},
		5: {`"kind":"state","closer":"active"`, `"reason":"duplicate"`},
		6: {`"kind":"rst"`, `"flags":"R"`, `"injected":true}`},
		7: {`"conn_id":2,"kind":"state","seq":0,"ack":0,"len":0,"client_state":"CLOSED","server_state":"TIME_WAIT","reason":"time-wait-expired"}`},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d = %s, want it to contain %s", i+1, lines[i], w)
			}
		}
	}
	for i, l := range lines {
		for _, absent := range map[int][]string{
			1: {`"copies"`, `"after"`, `"closer"`, `"reason"`},
			3: {`"rule"`, `"action"`, `"delay"`, `"nth":0`, `"injected"`},
			7: {`"from"`, `"flags"`, `"nth"`, `"closer"`, `"rule"`},
		}[i] {
			if strings.Contains(l, absent) {
				t.Errorf("line %d = %s, want no %s", i+1, l, absent)
			}
		}
	}
}

func TestMarshalJSON(t *testing.T) {
	e := sampleEvents()[3]
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var got Event
	if err := json.Unmarshal(b, &got); err != nil || got != e {
		t.Errorf("json.Marshal then Unmarshal = %+v, %v; want %+v", got, err, e)
	}
}

// TestUnmarshalBadInput: a line spelled otherwise than the stream spells
// it fails, naming the field.
func TestUnmarshalBadInput(t *testing.T) {
	good := `{"time":"2026-11-21T12:00:00Z","conn":"198.18.1.2:40000->198.19.2.2:8080","conn_id":1,"from":"client","kind":"syn","nth":1,"seq":1,"ack":0,"flags":"S","len":0,"client_state":"SYN_SENT","server_state":"LISTEN"}`
	var e Event
	if err := json.Unmarshal([]byte(good), &e); err != nil || e.Kind != statetrack.Syn || e.ServerState != statetrack.Listen {
		t.Fatalf("good line: %+v, %v", e, err)
	}
	for _, c := range []struct{ from, to, want string }{
		{`"conn":"198.18.1.2:40000->198.19.2.2:8080"`, `"conn":"198.18.1.2:40000"`, "conn:"},
		{`->198.19.2.2:8080`, `->nowhere`, "conn:"},
		{`"kind":"syn"`, `"kind":"synn"`, `kind: unknown packet kind "synn"`},
		{`"kind":"syn"`, `"kind":"state"`, "reason: missing"},
		{`"kind":"syn"`, `"kind":"state","reason":"gone-fishing"`, `reason: unknown reason "gone-fishing"`},
		{`"len":0`, `"len":0,"reason":"released"`, "reason: \"released\" in a packet event"},
		{`"from":"client"`, `"from":"router"`, `from: unknown side "router"`},
		{`"from":"client",`, ``, "from, flags: missing"},
		{`"flags":"S"`, `"flags":"SX"`, "flags:"},
		{`"nth":1`, `"nth":1,"closer":"first"`, `closer: unknown closer "first"`},
		{`"client_state":"SYN_SENT"`, `"client_state":"HALF_OPEN"`, `client_state: unknown state "HALF_OPEN"`},
		{`"server_state":"LISTEN"`, `"server_state":""`, "server_state:"},
		{`"len":0`, `"len":0,"rule":"r"`, "rule, action:"},
		{`"len":0`, `"len":0,"rule":"r","action":"mangle"`, `action: unknown action "mangle"`},
		{`"len":0`, `"len":0,"rule":"r","action":"delay"`, "delay: missing"},
		{`"len":0`, `"len":0,"rule":"r","action":"delay","delay":"soon"`, "delay:"},
		{`"len":0`, `"len":0,"rule":"r","action":"duplicate","copies":1`, "after: missing"},
		{`"seq":1`, `"seq":"one"`, "cannot unmarshal"},
	} {
		bad := strings.Replace(good, c.from, c.to, 1)
		if bad == good {
			t.Fatalf("case %q: nothing replaced", c.want)
		}
		err := json.Unmarshal([]byte(bad), &e)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\nerr = %v, want it to contain %q", bad, err, c.want)
		}
	}
}

func TestReasons(t *testing.T) {
	for _, r := range []Reason{Released, Duplicate, QuietHandshake, Healed, Gone(statetrack.TimeWaitExpired), Gone(statetrack.Replaced)} {
		if got, err := ParseReason(r.String()); err != nil || got != r {
			t.Errorf("ParseReason(%q) = %v, %v", r, got, err)
		}
	}
	for _, g := range statetrack.GoneReasons() {
		if r := Gone(g); r.String() != g.String() {
			t.Errorf("Gone(%s) is spelled %q", g, r)
		}
		if got, ok := Gone(g).Gone(); !ok || got != g {
			t.Errorf("Gone(%s).Gone() = %v, %v", g, got, ok)
		}
	}
	for _, r := range []Reason{Released, QuietHandshake, Healed} {
		if _, ok := r.Gone(); ok {
			t.Errorf("%s is a connection leaving the table", r)
		}
	}
	if NoReason.String() != "" {
		t.Errorf("NoReason is spelled %q", NoReason)
	}
}

// encodingJSON is the reference appendJSON is held to: encoding/json's
// encoding of the line, HTML escaping off, without the newline.
func encodingJSON(t testing.TB, e *Event) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(toLine(e)); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func TestAppendJSONIsEncodingJSON(t *testing.T) {
	evs := sampleEvents()
	for _, name := range []string{"", "plain", "tab\there", "nl\n\r\b\f\x00\x1f\x7f", `q"b\`, "<&>", "é ☃ 𝄞", "\u2028\u2029", "bad\xff\xc3(utf8", "\xed\xa0\x80"} {
		e := evs[0]
		e.Rule = name
		evs = append(evs, e)
	}
	zoned := evs[0]
	zoned.Client = netip.MustParseAddrPort(`[fe80::1%eth"0]:1`)
	evs = append(evs, zoned, Event{})
	for _, e := range evs {
		if got, want := string(appendJSON(nil, &e)), encodingJSON(t, &e); got != want {
			t.Errorf("appendJSON:\n got %s\nwant %s", got, want)
		}
	}
}

// FuzzAppendJSON holds appendJSON to encoding/json for any rule name,
// numbers, flags and times.
func FuzzAppendJSON(f *testing.F) {
	f.Add("r", uint64(1), uint32(2), uint32(3), uint8(0x12), int64(1e18), int64(300e6), uint8(2))
	f.Add("é\u2028\x01\"", uint64(0), uint32(0), uint32(1<<31), uint8(0), int64(-5), int64(0), uint8(9))
	f.Fuzz(func(t *testing.T, rule string, id uint64, seq, nth uint32, flags uint8, ns, d int64, reason uint8) {
		e := sampleEvents()[0]
		e.Rule, e.ConnID, e.Seq, e.Nth, e.Flags = rule, id, seq, nth, statetrack.Flags(flags)
		e.Time, e.After, e.Reason = time.Unix(0, ns).UTC(), time.Duration(d), Reason(reason%8)
		if got, want := string(appendJSON(nil, &e)), encodingJSON(t, &e); got != want {
			t.Errorf("appendJSON:\n got %s\nwant %s", got, want)
		}
	})
}

// FuzzUnmarshalJSON: any line either fails to decode or decodes to an
// event whose own line decodes back to it (and to the same line: a time
// in another zone decodes to a Location of its own, so lines are
// compared).
func FuzzUnmarshalJSON(f *testing.F) {
	for _, e := range sampleEvents() {
		f.Add(appendJSON(nil, &e))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		if json.Unmarshal(b, &e) != nil {
			return
		}
		line := appendJSON(nil, &e)
		var again Event
		if err := json.Unmarshal(line, &again); err != nil || string(appendJSON(nil, &again)) != string(line) {
			t.Errorf("%s decoded to %+v, whose line %s decodes to %+v, %v", b, e, line, again, err)
		}
	})
}

// TestQuietHandshakeLine: the server taken for ESTABLISHED by a quiet
// handshake is a state event without a packet.
func TestQuietHandshakeLine(t *testing.T) {
	evs := sampleEvents()
	b, err := json.Marshal(evs[len(evs)-3])
	if err != nil {
		t.Fatal(err)
	}
	if w := `"conn_id":3,"kind":"state","seq":0,"ack":0,"len":0,"client_state":"ESTABLISHED","server_state":"ESTABLISHED","reason":"quiet-handshake"}`; !strings.Contains(string(b), w) {
		t.Errorf("quiet-handshake line %s lacks %s", b, w)
	}
	if strings.Contains(string(b), `"from"`) || strings.Contains(string(b), `"flags"`) {
		t.Errorf("quiet-handshake line %s has a packet's fields", b)
	}
}
