// Package ladder renders events as ladder diagrams: one column per
// endpoint with its state, an arrow per packet between them, and what the
// rules did to it, the way TCP is drawn in RFC 9293.
package ladder

import (
	"fmt"
	"io"
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

// Write prints events as ladder diagrams, one per connection incarnation
// (in the order of their first event), one line per event: the time since
// the connection's first event, the client's state, the packet as an arrow
// (✗ where it was dropped), the server's state (both states as they stand
// after the event), sequence and acknowledgment numbers relative to each
// side's initial sequence number, and what happened to the packet.
func Write(w io.Writer, evs []events.Event) {
	if len(evs) == 0 {
		fmt.Fprintln(w, "(no events)")
		return
	}
	isn := initialSeqs(evs)
	for n, conn := range byConnection(evs) {
		if n > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "connection %s (seq/ack relative to each side's SYN)\n", conn[0].Conn())
		line(w, "time", "client", "", "server", "seq/ack", "")
		start := conn[0].Time
		for i := range conn {
			e := &conn[i]
			line(w, fmt.Sprintf("+%.3f", e.Time.Sub(start).Seconds()),
				e.ClientState.String(), arrow(e), e.ServerState.String(), seqAck(e, isn), note(e))
		}
	}
}

// byConnection splits events by connection incarnation, keeping their order.
func byConnection(evs []events.Event) [][]events.Event {
	var conns [][]events.Event
	index := make(map[uint64]int)
	for _, e := range evs {
		i, ok := index[e.ConnID]
		if !ok {
			i = len(conns)
			index[e.ConnID] = i
			conns = append(conns, nil)
		}
		conns[i] = append(conns[i], e)
	}
	return conns
}

// line writes one line of the ladder's columns.
func line(w io.Writer, at, client, arrow, server, seqAck, note string) {
	s := fmt.Sprintf("%8s  %s %s %s %s %s", at, pad(client, stateWidth), pad(arrow, arrowWidth),
		pad(server, stateWidth), pad(seqAck, 14), note)
	fmt.Fprintln(w, strings.TrimRight(s, " "))
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
