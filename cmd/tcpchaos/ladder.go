package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/tcpchaos/tcpchaos/internal/config"
	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// collector is an events.Sink that keeps every event in memory and wakes
// the one caller of waitFor at each.
type collector struct {
	mu      sync.Mutex
	evs     []events.Event
	changed chan struct{} // capacity 1: "something changed since you looked"
}

func newCollector() *collector { return &collector{changed: make(chan struct{}, 1)} }

// Emit keeps a copy of e.
func (c *collector) Emit(e *events.Event) {
	c.mu.Lock()
	c.evs = append(c.evs, *e)
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Events returns a copy of the events so far, in emission order.
func (c *collector) Events() []events.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.evs)
}

// waitFor returns nil as soon as done holds for the events so far, or
// ctx's error when ctx ends first.
func (c *collector) waitFor(ctx context.Context, done func([]events.Event) bool) error {
	for !done(c.Events()) {
		select {
		case <-c.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Ladder columns, in characters.
const (
	stateWidth = 12 // "ESTABLISHED", "FIN_WAIT_1"
	arrowWidth = 30 // "── final-ack #2 . ──────────▶"
)

var (
	clientSide = statetrack.Client.String()
	serverSide = statetrack.Server.String()
)

// writeLadder prints events as a ladder diagram, one line each: the time
// since the first event, the client's state, the packet as an arrow (✗ where
// it was dropped), the server's state (both states as they stand after the
// event), sequence and acknowledgment numbers relative to each side's
// initial sequence number, and what happened to the packet.
func writeLadder(w io.Writer, evs []events.Event) {
	if len(evs) == 0 {
		fmt.Fprintln(w, "(no events)")
		return
	}
	start := evs[0].Time
	isn := initialSeqs(evs)
	conn := ""
	for i := range evs {
		e := &evs[i]
		if e.Conn != conn {
			conn = e.Conn
			fmt.Fprintf(w, "connection %s (seq/ack relative to each side's SYN)\n", conn)
			ladderLine(w, "time", "client", "", "server", "seq/ack", "")
		}
		ladderLine(w, fmt.Sprintf("+%.3f", e.Time.Sub(start).Seconds()),
			e.ClientState, arrow(e), e.ServerState, seqAck(e, isn), note(e))
	}
}

// ladderLine writes one line of the ladder's columns.
func ladderLine(w io.Writer, at, client, arrow, server, seqAck, note string) {
	line := fmt.Sprintf("%8s  %s %s %s %s %s", at, pad(client, stateWidth), pad(arrow, arrowWidth),
		pad(server, stateWidth), pad(seqAck, 14), note)
	fmt.Fprintln(w, strings.TrimRight(line, " "))
}

// arrow draws the packet from its sender towards its receiver, ending in ✗
// when a rule dropped it; a state event is a dot and its reason.
func arrow(e *events.Event) string {
	if e.Kind == events.StateKind {
		return "   · " + e.Reason
	}
	label := fmt.Sprintf(" %s #%d %s ", e.Kind, e.Nth, e.Flags)
	fill := max(arrowWidth-3-utf8.RuneCountInString(label), 1)
	line := strings.Repeat("─", fill)
	tip := "▶"
	if e.From == serverSide {
		tip = "◀"
	}
	if e.Action == config.Drop.String() {
		tip = "✗"
	}
	if e.From == serverSide {
		return tip + line + label + "──"
	}
	return "──" + label + line + tip
}

// connSide names one endpoint of one connection.
type connSide struct {
	conn uint64
	from string
}

// initialSeqs finds each endpoint's initial sequence number: the sequence
// number of the first SYN it sent.
func initialSeqs(evs []events.Event) map[connSide]uint32 {
	isn := make(map[connSide]uint32)
	for _, e := range evs {
		k := connSide{e.ConnID, e.From}
		if _, seen := isn[k]; !seen && strings.Contains(e.Flags, "S") {
			isn[k] = e.Seq
		}
	}
	return isn
}

// seqAck renders the packet's sequence number, and its acknowledgment
// number when it carries ACK, relative to the initial sequence numbers
// (absolute when the SYN was not seen).
func seqAck(e *events.Event, isn map[connSide]uint32) string {
	if e.Kind == events.StateKind {
		return ""
	}
	other := serverSide
	if e.From == serverSide {
		other = clientSide
	}
	rel := func(v uint32, side string) uint32 {
		if base, ok := isn[connSide{e.ConnID, side}]; ok {
			return v - base
		}
		return v
	}
	s := fmt.Sprintf("seq %d", rel(e.Seq, e.From))
	if strings.Contains(e.Flags, ".") {
		s += fmt.Sprintf(" ack %d", rel(e.Ack, other))
	}
	return s
}

// note says what a rule did to the packet, or what is remarkable about it.
func note(e *events.Event) string {
	var parts []string
	switch e.Action {
	case config.Drop.String():
		parts = append(parts, "✗ dropped by "+e.Rule)
	case config.Delay.String():
		parts = append(parts, fmt.Sprintf("⧗ delayed %s by %s", e.Delay, e.Rule))
	case config.Duplicate.String():
		parts = append(parts, fmt.Sprintf("⧉ duplicated ×%d after %s by %s", e.Copies, e.After, e.Rule))
	case config.Accept.String():
		parts = append(parts, "accepted by "+e.Rule)
	}
	if e.Closer != "" {
		parts = append(parts, e.Closer+" close")
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
