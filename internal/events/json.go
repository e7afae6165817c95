package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// stateKind is the "kind" of a state event.
const stateKind = "state"

// line is an event as one JSON line spells it: the stable field names and
// spellings, empty fields omitted.
type line struct {
	Time           time.Time `json:"time"`
	Conn           string    `json:"conn"`
	ConnID         uint64    `json:"conn_id"`
	From           string    `json:"from,omitempty"`
	Kind           string    `json:"kind"`
	Closer         string    `json:"closer,omitempty"`
	Nth            uint32    `json:"nth,omitempty"`
	Retransmission bool      `json:"retransmission,omitempty"`
	Seq            uint32    `json:"seq"`
	Ack            uint32    `json:"ack"`
	Flags          string    `json:"flags,omitempty"`
	Len            uint32    `json:"len"`
	ClientState    string    `json:"client_state"`
	ServerState    string    `json:"server_state"`
	Rule           string    `json:"rule,omitempty"`
	Action         string    `json:"action,omitempty"`
	Delay          string    `json:"delay,omitempty"`
	After          string    `json:"after,omitempty"`
	Copies         uint32    `json:"copies,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	Midstream      bool      `json:"midstream,omitempty"`
	NewIncarnation bool      `json:"new_incarnation,omitempty"`
	Injected       bool      `json:"injected,omitempty"`
	Blackhole      string    `json:"blackhole,omitempty"`
}

// toLine spells e as its JSON line does.
func toLine(e *Event) line {
	l := spell(e)
	l.Conn = e.Conn()
	return l
}

// spell is toLine but for Conn, which appendJSON appends without building
// the string.
func spell(e *Event) line {
	l := line{
		Time: e.Time, ConnID: e.ConnID, Closer: e.Closer.String(), Nth: e.Nth,
		Retransmission: e.Retransmission, Seq: e.Seq, Ack: e.Ack, Len: e.Len,
		ClientState: e.ClientState.String(), ServerState: e.ServerState.String(),
		Copies: e.Copies, Reason: e.Reason.String(), Midstream: e.Midstream, NewIncarnation: e.NewIncarnation, Injected: e.Injected,
	}
	switch {
	case e.IsState():
		l.Kind = stateKind
	case e.Kind != 0:
		l.Kind = e.Kind.String()
	}
	if e.HasPacket() {
		l.From, l.Flags = e.From.String(), e.Flags.String()
	}
	if e.Dark != 0 {
		l.Blackhole = e.Dark.Direction()
	}
	if e.Rule != "" {
		l.Rule, l.Action = e.Rule, e.Action.String()
		if e.Action.Holds() {
			l.Delay = e.Delay.String()
		}
		if e.Action.SendsCopies() {
			l.After = e.After.String()
		}
	}
	return l
}

// MarshalJSON encodes e as one line of the event stream (without the
// newline). JSONLines writes the same, without escaping HTML characters
// (json.Marshal writes "->" in "conn" as "-\u003e").
func (e Event) MarshalJSON() ([]byte, error) { return appendJSON(nil, &e), nil }

// appendJSON appends e's line to b, as encoding/json with HTML escaping
// off encodes toLine(e) (the tests hold it to that, byte for byte), and
// without its reflection: the writer goroutine encodes each event in a
// fraction of the time.
func appendJSON(b []byte, e *Event) []byte {
	l := spell(e)
	b = append(b, `{"time":"`...)
	b = l.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","conn":`...)
	if plain(e.Client) && plain(e.Server) {
		// digits, hex digits, '.', ':', '[' and ']': nothing to escape
		b = append(b, '"')
		b = e.Client.AppendTo(b)
		b = append(b, "->"...)
		b = e.Server.AppendTo(b)
		b = append(b, '"')
	} else {
		b = appendString(b, e.Conn())
	}
	b = append(b, `,"conn_id":`...)
	b = strconv.AppendUint(b, l.ConnID, 10)
	b = appendField(b, "from", l.From)
	b = append(b, `,"kind":`...)
	b = appendString(b, l.Kind)
	b = appendField(b, "closer", l.Closer)
	if l.Nth != 0 {
		b = append(b, `,"nth":`...)
		b = strconv.AppendUint(b, uint64(l.Nth), 10)
	}
	if l.Retransmission {
		b = append(b, `,"retransmission":true`...)
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, uint64(l.Seq), 10)
	b = append(b, `,"ack":`...)
	b = strconv.AppendUint(b, uint64(l.Ack), 10)
	b = appendField(b, "flags", l.Flags)
	b = append(b, `,"len":`...)
	b = strconv.AppendUint(b, uint64(l.Len), 10)
	b = append(b, `,"client_state":`...)
	b = appendString(b, l.ClientState)
	b = append(b, `,"server_state":`...)
	b = appendString(b, l.ServerState)
	b = appendField(b, "rule", l.Rule)
	b = appendField(b, "action", l.Action)
	b = appendField(b, "delay", l.Delay)
	b = appendField(b, "after", l.After)
	if l.Copies != 0 {
		b = append(b, `,"copies":`...)
		b = strconv.AppendUint(b, uint64(l.Copies), 10)
	}
	b = appendField(b, "reason", l.Reason)
	if l.Midstream {
		b = append(b, `,"midstream":true`...)
	}
	if l.NewIncarnation {
		b = append(b, `,"new_incarnation":true`...)
	}
	if l.Injected {
		b = append(b, `,"injected":true`...)
	}
	b = appendField(b, "blackhole", l.Blackhole)
	return append(b, '}')
}

// plain reports whether a's String and AppendTo agree and need no
// escaping: a valid address without a zone.
func plain(a netip.AddrPort) bool { return a.IsValid() && a.Addr().Zone() == "" }

// appendField appends `,"key":"value"` unless value is empty (omitempty).
func appendField(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return appendString(b, value)
}

// appendString appends s as a JSON string, escaped as encoding/json
// escapes it with HTML escaping off: quote, backslash and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, U+2028 and U+2029
// escaped (JavaScript line terminators).
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// UnmarshalJSON decodes one line of the event stream into e. Unknown
// fields are ignored (fields may be added); a value that is not spelled
// as the stream spells it, or a field missing where the event needs it,
// is an error naming the field.
func (e *Event) UnmarshalJSON(b []byte) error {
	var l line
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	ev, err := fromLine(&l)
	if err != nil {
		return fmt.Errorf("event: %w", err)
	}
	*e = ev
	return nil
}

// fromLine parses the typed fields out of l.
func fromLine(l *line) (Event, error) {
	e := Event{Time: l.Time, ConnID: l.ConnID, Nth: l.Nth, Retransmission: l.Retransmission, Seq: l.Seq, Ack: l.Ack,
		Len: l.Len, Rule: l.Rule, Copies: l.Copies, Midstream: l.Midstream, NewIncarnation: l.NewIncarnation,
		Injected: l.Injected}
	var errs []error
	field := func(name string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	client, server, ok := strings.Cut(l.Conn, "->")
	if !ok {
		field("conn", fmt.Errorf("%q is not client:port->server:port", l.Conn))
	} else {
		var err error
		e.Client, err = netip.ParseAddrPort(client)
		field("conn", err)
		e.Server, err = netip.ParseAddrPort(server)
		field("conn", err)
	}
	if l.Kind == stateKind {
		if l.Reason == "" {
			field("reason", errors.New("missing in a state event"))
		} else {
			var err error
			e.Reason, err = ParseReason(l.Reason)
			field("reason", err)
		}
	} else {
		var err error
		e.Kind, err = statetrack.ParseKind(l.Kind)
		field("kind", err)
		if l.Reason != "" {
			field("reason", fmt.Errorf("%q in a packet event (kind %q)", l.Reason, l.Kind))
		}
	}
	if e.HasPacket() {
		if l.From == "" || l.Flags == "" {
			field("from, flags", fmt.Errorf("missing in an event about a packet (kind %q)", l.Kind))
		} else {
			var err error
			e.From, err = statetrack.ParseSide(l.From)
			field("from", err)
			e.Flags, err = statetrack.ParseFlags(l.Flags)
			field("flags", err)
		}
	}
	var err error
	e.Closer, err = statetrack.ParseCloser(l.Closer)
	field("closer", err)
	e.ClientState, err = statetrack.ParseState(l.ClientState)
	field("client_state", err)
	e.ServerState, err = statetrack.ParseState(l.ServerState)
	field("server_state", err)
	if (l.Rule == "") != (l.Action == "") {
		field("rule, action", fmt.Errorf("rule %q with action %q: want both or neither", l.Rule, l.Action))
	} else if l.Action != "" {
		e.Action, err = rules.ParseActionType(l.Action)
		field("action", err)
	}
	duration := func(name, s string, d *time.Duration, want bool) {
		switch {
		case s != "":
			var err error
			*d, err = time.ParseDuration(s)
			field(name, err)
		case want:
			field(name, fmt.Errorf("missing for action %q", l.Action))
		}
	}
	duration("delay", l.Delay, &e.Delay, e.Rule != "" && e.Action.Holds())
	duration("after", l.After, &e.After, e.Rule != "" && e.Action.SendsCopies())
	if l.Blackhole != "" {
		e.Dark, err = rules.ParseDirection(l.Blackhole)
		field("blackhole", err)
	}
	return e, errors.Join(errs...)
}
