// Package ladder renders events as ladder diagrams: one column per
// endpoint with its state, an arrow per packet between them, and what the
// rules did to it, the way TCP is drawn in RFC 9293.
package ladder

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Ladder columns, in characters.
const (
	stateWidth = 12 // "ESTABLISHED", "FIN_WAIT_1"
	arrowWidth = 30 // "── final-ack #2 . ──────────▶"
)

// Options select how Write draws.
type Options struct {
	// ASCII draws with ASCII characters only (for logs): "-" for "─",
	// ">" and "<" for the arrow tips, "x" for "✗", and so on.
	ASCII bool
	// Color colours each packet a rule acted on by its action (ANSI
	// escapes: for a terminal).
	Color bool
}

// Write prints events as ladder diagrams, one per connection incarnation
// (in the order of their first event), one line per event: the time since
// the connection's first event, the client's state, the packet as an arrow
// (✗ where it was dropped), the server's state (both states as they stand
// after the event), sequence and acknowledgment numbers relative to each
// side's initial sequence number, and what happened to the packet. The
// first retransmission a fault provokes (the packet sent again, or, for a
// lost acknowledgment, the packet it acknowledged) says how long after the
// fault it came.
func Write(w io.Writer, evs []events.Event, opts Options) {
	if len(evs) == 0 {
		fmt.Fprintln(w, "(no events)")
		return
	}
	isn := initialSeqs(evs)
	for n, conn := range ByConnection(evs) {
		if n > 0 {
			fmt.Fprintln(w)
		}
		opts.line(w, fmt.Sprintf("connection %s (id %d; seq/ack relative to each side's SYN)", conn[0].Conn(), conn[0].ConnID), nil)
		opts.row(w, nil, "time", "client", "", "server", "seq/ack", "")
		start := conn[0].Time
		var faults []*events.Event // faults not yet followed by the retransmission they provoke
		for i := range conn {
			e := &conn[i]
			n := note(e)
			if e.Retransmission && !e.IsState() {
				for j, f := range faults {
					if provoked(f, e) {
						n = strings.Replace(n, "retransmission", fmt.Sprintf("retransmission %.3f s after the %s of %s #%d",
							e.Time.Sub(f.Time).Seconds(), f.Action, f.Kind, f.Nth), 1)
						faults = slices.Delete(faults, j, j+1)
						break
					}
				}
			}
			if e.Faulted() && !e.IsState() {
				faults = append(faults, e)
			}
			opts.row(w, e, fmt.Sprintf("+%.3f", e.Time.Sub(start).Seconds()),
				e.ClientState.String(), arrow(e), e.ServerState.String(), seqAck(e, isn), n)
		}
	}
}

// acked is the kind whose retransmission a lost packet of each kind
// provokes from its receiver: the packet it acknowledges.
var acked = map[statetrack.Kind]statetrack.Kind{
	statetrack.SynAck:       statetrack.Syn,
	statetrack.HandshakeAck: statetrack.SynAck,
	statetrack.FinAck:       statetrack.Fin,
	statetrack.FinalAck:     statetrack.Fin,
}

// provoked reports whether the retransmission r is one that the fault f
// provokes: its sender sending the packet again, or its receiver
// retransmitting the packet that f acknowledged.
func provoked(f, r *events.Event) bool {
	if r.From == f.From {
		return r.Kind == f.Kind
	}
	k, ok := acked[f.Kind]
	return ok && r.Kind == k
}

// connKey names a connection incarnation: its id with its endpoints (the
// queues of one run number their connections each on their own).
type connKey struct {
	id             uint64
	client, server netip.AddrPort
}

// ByConnection splits events by connection incarnation, in the order of
// their first event, keeping the events' order.
func ByConnection(evs []events.Event) [][]events.Event {
	var conns [][]events.Event
	index := make(map[connKey]int)
	for _, e := range evs {
		k := connKey{e.ConnID, e.Client, e.Server}
		i, ok := index[k]
		if !ok {
			i = len(conns)
			index[k] = i
			conns = append(conns, nil)
		}
		conns[i] = append(conns[i], e)
	}
	return conns
}

// row writes one line of the ladder's columns, about e (nil: a heading).
func (o Options) row(w io.Writer, e *events.Event, at, client, arrow, server, seqAck, note string) {
	o.line(w, fmt.Sprintf("%8s  %s %s %s %s %s", at, pad(client, stateWidth), pad(arrow, arrowWidth),
		pad(server, stateWidth), pad(seqAck, 14), note), e)
}

// asciiFor replaces what Write draws outside ASCII.
var asciiFor = strings.NewReplacer("─", "-", "▶", ">", "◀", "<", "✗", "x", "·", ".", "⧗", "~", "⧉", "+", "±", "+/-", "×", "x")

// ANSI colours of the packets a rule acted on, by what the action does.
const (
	colorDropped = "\x1b[31m" // red
	colorHeld    = "\x1b[33m" // yellow
	colorCopied  = "\x1b[36m" // cyan
	colorReset   = "\x1b[0m"
)

// line writes s, trimmed, as the options draw it; e is the event it is
// about (nil: none).
func (o Options) line(w io.Writer, s string, e *events.Event) {
	s = strings.TrimRight(s, " ")
	if o.ASCII {
		s = asciiFor.Replace(s)
	}
	if o.Color && e != nil && e.Faulted() && !e.IsState() {
		c := colorCopied
		switch {
		case !e.Action.Delivers():
			c = colorDropped
		case e.Action.Holds():
			c = colorHeld
		}
		s = c + s + colorReset
	}
	fmt.Fprintln(w, s)
}

// arrow draws the packet from its sender towards its receiver, ending in ✗
// when a rule dropped it; a state event is a dot and its reason.
func arrow(e *events.Event) string {
	if e.IsState() {
		return "   · " + e.Reason.String()
	}
	label := fmt.Sprintf(" %s #%d %s ", e.Kind, e.Nth, e.Flags)
	fill := max(arrowWidth-3-utf8.RuneCountInString(label), 1)
	line := strings.Repeat("─", fill)
	tip := "▶"
	if e.From == statetrack.Server {
		tip = "◀"
	}
	if e.Rule != "" && !e.Action.Delivers() {
		tip = "✗"
	}
	if e.From == statetrack.Server {
		return tip + line + label + "──"
	}
	return "──" + label + line + tip
}

// connSide names one endpoint of one connection.
type connSide struct {
	conn uint64
	from statetrack.Side
}

// initialSeqs finds each endpoint's initial sequence number: the sequence
// number of the first SYN it sent.
func initialSeqs(evs []events.Event) map[connSide]uint32 {
	isn := make(map[connSide]uint32)
	for _, e := range evs {
		k := connSide{e.ConnID, e.From}
		if _, seen := isn[k]; !seen && e.Flags.Has(statetrack.SYN) {
			isn[k] = e.Seq
		}
	}
	return isn
}

// seqAck renders the packet's sequence number, and its acknowledgment
// number when it carries ACK, relative to the initial sequence numbers
// (absolute when the SYN was not seen).
func seqAck(e *events.Event, isn map[connSide]uint32) string {
	if e.IsState() {
		return ""
	}
	rel := func(v uint32, side statetrack.Side) uint32 {
		if base, ok := isn[connSide{e.ConnID, side}]; ok {
			return v - base
		}
		return v
	}
	s := fmt.Sprintf("seq %d", rel(e.Seq, e.From))
	if e.Flags.Has(statetrack.ACK) {
		s += fmt.Sprintf(" ack %d", rel(e.Ack, e.From.Other()))
	}
	return s
}

// note says what a rule did to the packet, or what is remarkable about it.
func note(e *events.Event) string {
	var parts []string
	if e.Rule != "" {
		d := rules.Decision{Action: e.Action, Hold: e.Delay, Copies: e.Copies, After: e.After}
		parts = append(parts, d.Note()+" by "+e.Rule)
	}
	if e.Closer != statetrack.NoCloser {
		parts = append(parts, e.Closer.String()+" close")
	}
	if e.Retransmission {
		parts = append(parts, "retransmission")
	}
	if e.Midstream {
		parts = append(parts, "picked up mid-stream")
	}
	if e.NewIncarnation {
		parts = append(parts, "new incarnation")
	}
	return strings.Join(parts, ", ")
}

// pad left-aligns s in width characters (runes, not bytes).
func pad(s string, width int) string {
	return s + strings.Repeat(" ", max(width-utf8.RuneCountInString(s), 0))
}
