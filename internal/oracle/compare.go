package oracle

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Project returns the conntrack states that the tracker's view of one
// connection implies, in order: the states nf_conntrack goes through when
// it sees the packets the tracker saw (a packet a rule drops included:
// conntrack sees packets as they reach the router, before tcpchaos acts)
// and the tracker's reading of them is right. The handshake follows the
// tracker's kinds: syn opens (SYN_SENT), syn-ack answers (SYN_RECV),
// handshake-ack (or a quiet handshake's state event) establishes. The close follows its states: the first fin
// starts it (FIN_WAIT), the first FIN being acknowledged (its sender in
// FIN_WAIT_2) is CLOSE_WAIT, the other side's fin LAST_ACK, and the
// second FIN being acknowledged (its sender in TIME_WAIT or CLOSED)
// TIME_WAIT. An rst ends the connection (CLOSE).
func Project(evs []events.Event) []Step {
	var steps []Step
	state := "NONE"
	var first statetrack.Side // the first fin's sender, from FIN_WAIT on
	for _, e := range evs {
		if e.IsState() && e.Reason != events.QuietHandshake {
			continue
		}
		next := state
		switch {
		case e.Kind == statetrack.Rst:
			next = "CLOSE"
		case e.Kind == statetrack.Syn && state == "NONE":
			next = "SYN_SENT"
		case e.Kind == statetrack.SynAck && state == "SYN_SENT":
			next = "SYN_RECV"
		case state == "SYN_RECV" && (e.From == statetrack.Client || e.Reason == events.QuietHandshake) && e.ServerState == statetrack.Established:
			// the third ACK, or the client's data in its place, or the
			// third ACK unseen after a quiet handshake
			next = "ESTABLISHED"
		case e.Kind == statetrack.Fin && state == "ESTABLISHED":
			next, first = "FIN_WAIT", e.From
		case e.Kind == statetrack.Fin && (state == "FIN_WAIT" || state == "CLOSE_WAIT") && e.From != first:
			next = "LAST_ACK"
		case state == "FIN_WAIT" && e.From != first && stateOf(e, first) == statetrack.FinWait2:
			next = "CLOSE_WAIT"
		case state == "LAST_ACK" && e.From == first:
			if st := stateOf(e, first.Other()); st == statetrack.TimeWait || st == statetrack.Closed {
				next = "TIME_WAIT"
			}
		}
		if next != state {
			steps = append(steps, Step{next, e.Time})
			state = next
		}
	}
	return steps
}

// Step is a state a tracker entered and when.
type Step struct {
	State string
	Time  time.Time
}

// String renders "STATE@15:04:05.000000".
func (s Step) String() string { return s.State + "@" + s.Time.Format("05.000000") }

// stateOf returns the state of side after e.
func stateOf(e events.Event, side statetrack.Side) statetrack.State {
	if side == statetrack.Client {
		return e.ClientState
	}
	return e.ServerState
}

// Observed returns the states one conntrack entry reported, in order and
// without repeats, and whether it ended (DESTROY).
func Observed(cts []CTEvent) (steps []Step, destroyed bool) {
	for _, e := range cts {
		if e.State != "" && (len(steps) == 0 || steps[len(steps)-1].State != e.State) {
			steps = append(steps, Step{e.State, e.Time})
		}
		destroyed = destroyed || e.Type == "DESTROY"
	}
	return steps, destroyed
}

// Class is how conntrack's view of a connection relates to the tracker's.
type Class int

// The classes. Those that Explained reports true for are documented
// coarseness of conntrack or, for QuietClose, what the tracker leaves
// unseen by design; the others are disagreements.
const (
	// Agree: conntrack reported exactly the states the tracker's
	// classification implies, and ended the entry.
	Agree Class = iota
	// Coalesced: conntrack skipped some of those states, in order, and
	// ended in the same one. Its events report the entry's state when they
	// are delivered, after the packet has left the router: while a packet
	// waits in the queue, the next one (from the other side) may already
	// have moved the entry on, and the event of the first reports the
	// state after both.
	Coalesced
	// Reopened: agree or coalesced, but conntrack did not end the entry: a
	// SYN on the tuple in TIME_WAIT (or CLOSE) reopened it for the next
	// incarnation (its SYN_SENT follows TIME_WAIT in the same entry), where
	// the tracker ends the connection and starts a new one (replaced).
	Reopened
	// EarlyCloseWait: conntrack went to CLOSE_WAIT where the tracker's
	// view has none, and the other side acknowledged the first FIN only
	// with its own FIN (or RST): conntrack moves FIN_WAIT → CLOSE_WAIT on
	// any ACK from the other direction, without comparing it with the
	// FIN's sequence number, and took for the FIN's ACK a segment that
	// does not cover it. Either the tracker saw that segment after the FIN
	// (a delayed ACK of data, sent before the FIN arrived), or the two
	// trackers saw it and the FIN in opposite orders: two packets of
	// opposite directions that reach the router at once are handled on
	// two CPUs, each through conntrack's hook and then the queue, so one
	// may pass conntrack second and the queue first (or bypass the queue
	// unseen as part of a quiet data phase, its mark read before the
	// FIN's cleared it). Outside a quiet close (QuietClose) no segment
	// acknowledging the FIN can be unseen: it is sent after the FIN went
	// through the queue. Otherwise as agree or coalesced. conntrack is
	// wrong here; the tracker keeps the closer in FIN_WAIT_1 until its FIN
	// is acknowledged.
	EarlyCloseWait
	// QuietClose: conntrack went to CLOSE_WAIT where the tracker's view
	// has none, and the first FIN's verdict made the close quiet (it was
	// accepted, not a retransmission, and found both endpoints
	// ESTABLISHED, in a run with the quiet close in force): what the other side sent before its own FIN or RST (the ACK of
	// the first FIN, a half-close's data and ACKs) bypassed the queue
	// unseen, by design, and conntrack, which sees every packet, moved
	// FIN_WAIT → CLOSE_WAIT on it. The tracker keeps the closer in
	// FIN_WAIT_1 until the other side's FIN (README "What is queued").
	// Whether the segment conntrack took did cover the FIN (or was an
	// early close-wait's) the unseen packets cannot tell. Otherwise as
	// agree or coalesced.
	QuietClose
	// Unmatched: a connection one side has and the other has not.
	Unmatched
	// Differ: any other difference.
	Differ
	// NotDestroyed: the states agree but conntrack did not end the entry.
	NotDestroyed
	// NotEnded: the states agree and conntrack ended the entry, but the
	// tracker did not end the connection: no TIME_WAIT expiry, no new
	// incarnation replacing it, and not both endpoints CLOSED.
	NotEnded
	numClasses
)

var classNames = [numClasses]string{"agree", "coalesced", "reopened", "early close-wait", "quiet close", "unmatched", "differ", "not destroyed", "not ended"}

// classWhy says in a line what each class is and why it comes about (the
// README's "Tests" has the long form).
var classWhy = [numClasses]string{
	Agree: "the same states, both ended",
	Coalesced: "conntrack's coarseness: it skipped states, in order, and ended in the same one; " +
		"its events report the entry's state when delivered, after the packet has left the router, " +
		"so the next packet (the other side's FIN, the sender's next segment) may have moved it on meanwhile",
	Reopened: "conntrack's coarseness: it keys entries by tuple, and a SYN on an entry in TIME_WAIT or CLOSE " +
		"takes it back to SYN_SENT for the next incarnation, where the tracker ends the connection (replaced) and starts a new one",
	EarlyCloseWait: "conntrack is wrong: it took for the first FIN's ACK a segment of the other side that does not cover it " +
		"(an ACK written before the FIN arrived, seen after it, or seen before it by the tracker: two packets of opposite directions " +
		"that reach the router at once pass conntrack and the queue on two CPUs, in either order), without comparing sequence numbers; " +
		"the other side acknowledged the FIN only with its own, and the tracker keeps the closer in FIN_WAIT_1",
	QuietClose: "the tracker's quiet close: the first FIN's verdict let what the other side sent before its own FIN " +
		"(the FIN's ACK, a half-close's data) bypass the queue unseen, by design, and conntrack, which sees every packet, " +
		"moved to CLOSE_WAIT on it, where the tracker keeps the closer in FIN_WAIT_1 until the other side's FIN",
	Unmatched:    "a disagreement: a connection one tracker has and the other has not",
	Differ:       "a disagreement: other states, or another last state",
	NotDestroyed: "a disagreement: the states agree but conntrack did not end the entry",
	NotEnded: "a disagreement: the states agree but the tracker did not end the connection " +
		"(no TIME_WAIT expiry, no new incarnation, not both endpoints CLOSED)",
}

// String returns the class's name.
func (c Class) String() string { return classNames[c] }

// Why says in a line what the class is and why it comes about.
func (c Class) Why() string { return classWhy[c] }

// Explained reports whether c is not a disagreement: conntrack being
// coarser than the tracker, or the tracker's quiet close.
func (c Class) Explained() bool { return c <= QuietClose }

// Verdict is the comparison of one connection.
type Verdict struct {
	Conn    string
	Shape   Shape
	Class   Class
	Tracker []Step // Project of the tracker's events
	CT      []Step // Observed states
	Destroy bool   // conntrack ended the entry
	Ended   bool   // the tracker ended the connection
}

// String renders the verdict on one line.
func (v Verdict) String() string {
	return fmt.Sprintf("%s %s %s: tracker %v, conntrack %v (destroyed %v, ended %v)", v.Conn, v.Shape, v.Class, v.Tracker, v.CT, v.Destroy, v.Ended)
}

// Compare matches the tracker's connections with conntrack's entries (by
// tuple, incarnations in order) and classifies each. quietClose says
// whether the run had the quiet close in force (its status line says so):
// only then can the ACK of a first FIN pass unseen (QuietClose).
func Compare(evs []events.Event, cts []CTEvent, quietClose bool) []Verdict {
	byConn := map[string][][]events.Event{}
	order := map[uint64]int{} // conn id → index in byConn[conn]
	for _, e := range evs {
		c := e.Conn()
		i, ok := order[e.ConnID]
		if !ok {
			i = len(byConn[c])
			order[e.ConnID] = i
			byConn[c] = append(byConn[c], nil)
		}
		byConn[c][i] = append(byConn[c][i], e)
	}
	ctConn := map[string][][]CTEvent{}
	type entry struct {
		conn string
		id   uint64
	}
	ctOrder := map[entry]int{}
	for _, e := range cts {
		k := entry{e.Conn(), e.ID}
		i, ok := ctOrder[k]
		if !ok {
			i = len(ctConn[e.Conn()])
			ctOrder[k] = i
			ctConn[e.Conn()] = append(ctConn[e.Conn()], nil)
		}
		ctConn[e.Conn()][i] = append(ctConn[e.Conn()][i], e)
	}
	reopened := map[string][]bool{} // per conn, per incarnation
	for c, entries := range ctConn {
		var incs [][]CTEvent
		for _, es := range entries {
			parts := splitReopened(es)
			incs = append(incs, parts...)
			for j := range parts {
				reopened[c] = append(reopened[c], j < len(parts)-1)
			}
		}
		ctConn[c] = incs
	}
	conns := map[string]Shape{}
	for c, incs := range byConn {
		conns[c] = shapeOfPort(incs[0][0].Server.Port())
	}
	for c, incs := range ctConn {
		conns[c] = shapeOfPort(incs[0][0].Dst.Port())
	}
	var out []Verdict
	for c, shape := range conns {
		tr, ct := byConn[c], ctConn[c]
		for i := range max(len(tr), len(ct)) {
			v := Verdict{Conn: c, Shape: shape, Class: Unmatched}
			if i < len(tr) {
				v.Tracker, v.Ended = Project(tr[i]), ended(tr[i])
			}
			if i < len(ct) {
				v.CT, v.Destroy = Observed(ct[i])
			}
			if i < len(tr) && i < len(ct) {
				again := reopened[c][i]
				v.Class = classify(v.Tracker, v.CT, v.Destroy || again, v.Ended)
				if v.Class == Differ && !slices.Contains(names(v.Tracker), "CLOSE_WAIT") && !finAckedAlone(tr[i]) {
					if c := classify(v.Tracker, without(v.CT, "CLOSE_WAIT"), v.Destroy || again, v.Ended); c == Agree || c == Coalesced {
						v.Class = EarlyCloseWait
						if quietClose && quietClosed(tr[i]) {
							v.Class = QuietClose
						}
					}
				}
				if again && v.Class.Explained() {
					v.Class = Reopened
				}
			}
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Conn < out[j].Conn })
	return out
}

// firstFin returns the index of the connection's first fin event in evs
// (-1 for none).
func firstFin(evs []events.Event) int {
	return slices.IndexFunc(evs, func(e events.Event) bool { return !e.IsState() && e.Kind == statetrack.Fin })
}

// finAckedAlone reports whether, after the first FIN, the other side sent
// a segment acknowledging it before its own FIN or RST (or without one).
func finAckedAlone(evs []events.Event) bool {
	i := firstFin(evs)
	if i < 0 {
		return false
	}
	first, end := evs[i].From, evs[i].Seq+evs[i].Len+1
	for _, e := range evs[i+1:] {
		switch {
		case e.IsState() || e.From == first:
		case e.Kind == statetrack.Fin || e.Kind == statetrack.Rst:
			return false
		case e.Flags.Has(statetrack.ACK) && int32(end-e.Ack) <= 0:
			return true
		}
	}
	return false
}

// quietClosed reports whether the connection's first FIN made its close
// quiet, as the pipeline decides it when the quiet close is in force: the FIN
// was accepted (no fault), is no retransmission, and found both endpoints
// ESTABLISHED (the states after the event before it).
func quietClosed(evs []events.Event) bool {
	i := firstFin(evs)
	if i < 1 {
		return false
	}
	fin, before := evs[i], evs[i-1]
	return !fin.Retransmission && !fin.Faulted() &&
		before.ClientState == statetrack.Established && before.ServerState == statetrack.Established
}

// without returns steps without those in state, repeats merged.
func without(steps []Step, state string) []Step {
	var out []Step
	for _, s := range steps {
		if s.State != state && (len(out) == 0 || out[len(out)-1].State != s.State) {
			out = append(out, s)
		}
	}
	return out
}

// splitReopened splits one conntrack entry's events into the incarnations
// it followed: a SYN_SENT after TIME_WAIT or CLOSE starts the next.
func splitReopened(es []CTEvent) [][]CTEvent {
	var parts [][]CTEvent
	start, last := 0, ""
	for i, e := range es {
		if e.State == "SYN_SENT" && (last == "TIME_WAIT" || last == "CLOSE") {
			parts = append(parts, es[start:i])
			start = i
		}
		if e.State != "" {
			last = e.State
		}
	}
	return append(parts, es[start:])
}

// classify compares the projected and the observed states.
func classify(tracker, ct []Step, destroyed, ended bool) Class {
	tr, cs := names(tracker), names(ct)
	switch {
	case len(cs) == 0 || len(tr) == 0 || cs[len(cs)-1] != tr[len(tr)-1] || !subsequence(cs, tr):
		return Differ
	case !destroyed:
		return NotDestroyed
	case !ended:
		return NotEnded
	case slices.Equal(cs, tr):
		return Agree
	}
	return Coalesced
}

// ended reports whether the tracker ended a connection: its TIME_WAIT
// expired, a new incarnation replaced it, or its last event shows both
// endpoints CLOSED.
func ended(evs []events.Event) bool {
	for _, e := range evs {
		if e.Reason == events.Gone(statetrack.TimeWaitExpired) || e.Reason == events.Gone(statetrack.Replaced) {
			return true
		}
	}
	last := evs[len(evs)-1]
	return last.ClientState == statetrack.Closed && last.ServerState == statetrack.Closed
}

// names returns the steps' states.
func names(steps []Step) []string {
	n := make([]string, len(steps))
	for i, s := range steps {
		n[i] = s.State
	}
	return n
}

// subsequence reports whether a's elements appear in b in order.
func subsequence(a, b []string) bool {
	i := 0
	for _, x := range b {
		if i < len(a) && a[i] == x {
			i++
		}
	}
	return i == len(a)
}

// shapeOfPort returns the shape of server port p (ClientClose for a port
// of none: the comparison still runs, under the wrong name).
func shapeOfPort(p uint16) Shape {
	if p >= BasePort && p < BasePort+uint16(NumShapes) {
		return Shape(p - BasePort)
	}
	return ClientClose
}

// Summary counts verdicts by shape and class.
type Summary struct {
	Counts [NumShapes][numClasses]int
}

// Summarize counts vs.
func Summarize(vs []Verdict) Summary {
	var s Summary
	for _, v := range vs {
		s.Counts[v.Shape][v.Class]++
	}
	return s
}

// Table renders the summary as a markdown table: a row per shape, a
// column per class.
func (s Summary) Table() string {
	var b strings.Builder
	b.WriteString("| shape |")
	for c := range numClasses {
		fmt.Fprintf(&b, " %s |", c)
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---:|", int(numClasses)))
	b.WriteString("\n")
	for sh := range NumShapes {
		fmt.Fprintf(&b, "| %s |", sh)
		for c := range numClasses {
			fmt.Fprintf(&b, " %d |", s.Counts[sh][c])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Legend lists the classes that occur in s, one line each: the name, the
// connections of that class and what it means (Class.Why).
func (s Summary) Legend() string {
	var b strings.Builder
	for c := range numClasses {
		n := 0
		for sh := range NumShapes {
			n += s.Counts[sh][c]
		}
		if n > 0 {
			fmt.Fprintf(&b, "- %s (%d): %s\n", c, n, c.Why())
		}
	}
	return b.String()
}
