package expect

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Evaluator evaluates a run's expectations from its events. Feed it every
// event (it is an events.Sink), then call Exited if a command ran, then
// End. It is safe for concurrent use.
//
// Memory is bounded by the open connections, not by the events: each
// check keeps, per connection still in the tracker's table, only what it
// still needs (pending firings, the time an endpoint entered a state,
// whether a state was reached), and folds a connection into its counters
// when the connection leaves the table.
type Evaluator struct {
	mu      sync.Mutex
	exps    []Expectation
	tallies []tally
	conns   map[uint64]*conn
	first   time.Time // the earliest event's time
	last    time.Time // the latest event's time
	status  *int
	lost    uint64 // events that never arrived (Lost)
}

// conn is what the evaluator knows of an open connection.
type conn struct {
	id             uint64
	client, server netip.AddrPort
	first          time.Time
}

// name returns the connection as client:port->server:port
// (events.Event.Conn): only for what is reported, not on every new
// connection.
func (c *conn) name() string { return c.client.String() + "->" + c.server.String() }

// point is the part of an event the checks read.
type point struct {
	at     time.Time
	from   statetrack.Side
	kind   statetrack.Kind // 0 for a state event
	closer statetrack.Closer
	nth    uint32
	states [2]statetrack.State
	rule   string // the rule that fired on the packet (events.Event.Fired), "" if none
}

// New returns an evaluator of exps.
func New(exps []Expectation) *Evaluator {
	ev := &Evaluator{exps: exps, conns: make(map[uint64]*conn)}
	for _, x := range exps {
		ev.tallies = append(ev.tallies, x.Check.start())
	}
	return ev
}

// Emit takes one event. Events of untracked tuples (no connection) are
// ignored.
func (ev *Evaluator) Emit(e events.Event) {
	if e.ConnID == 0 {
		return
	}
	p, isGone := toPoint(&e)
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.first.IsZero() || p.at.Before(ev.first) {
		ev.first = p.at
	}
	if p.at.After(ev.last) {
		ev.last = p.at
	}
	if len(ev.tallies) == 0 {
		return // no check to feed: only the span counts
	}
	c, ok := ev.conns[e.ConnID]
	if !ok {
		c = &conn{id: e.ConnID, client: e.Client, server: e.Server, first: p.at}
		ev.conns[e.ConnID] = c
	}
	for _, t := range ev.tallies {
		t.observe(&p, c)
	}
	if isGone {
		for _, t := range ev.tallies {
			t.gone(c, p.at)
		}
		delete(ev.conns, e.ConnID)
	}
}

// Flush does nothing: the evaluator writes nothing (it is an
// events.Writer, so that it can sit behind an events.Async, off the packet
// path).
func (ev *Evaluator) Flush() error { return nil }

// Lost records that n events never reached the evaluator (an
// events.Async whose buffer was full): the outcomes say that they were
// evaluated on incomplete events.
func (ev *Evaluator) Lost(n uint64) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.lost += n
}

// Span returns the times of the earliest and the latest event seen (zero
// before the first): a replay's start and end.
func (ev *Evaluator) Span() (first, last time.Time) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return ev.first, ev.last
}

// Exited records that the command under test exited with status (128+N,
// as a shell gives it, when signal N ended it).
func (ev *Evaluator) Exited(status int) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.status = &status
}

// End returns the outcome of every expectation, in config order, for a
// run that ended at at (the zero time: at the latest event seen); hits are
// the rules' hit counts by name. Call it once, after the last event:
// the connections still open count as ending with the run. When a command ran (Exited) and no Exit
// expectation was given, a DefaultExit outcome is added last.
func (ev *Evaluator) End(at time.Time, hits map[string]uint64) []Outcome {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if at.IsZero() {
		at = ev.last
	}
	for _, c := range ev.conns {
		for _, t := range ev.tallies {
			t.gone(c, at)
		}
	}
	clear(ev.conns)
	f := facts{status: ev.status, hits: hits}
	exps, tallies := ev.exps, ev.tallies
	if ev.status != nil && !hasExit(exps) {
		x := Expectation{Name: DefaultExit, Check: &Exit{}}
		exps = append(exps[:len(exps):len(exps)], x)
		tallies = append(tallies[:len(tallies):len(tallies)], x.Check.start())
	}
	out := make([]Outcome, len(exps))
	for i, x := range exps {
		o := tallies[i].end(at, f)
		o.Name, o.Type, o.Text, o.EventsLost = x.Name, x.Check.Type(), x.Check.String(), ev.lost
		out[i] = o
	}
	return out
}

func hasExit(exps []Expectation) bool {
	for _, x := range exps {
		if _, ok := x.Check.(*Exit); ok {
			return true
		}
	}
	return false
}

// Failed reports whether any outcome fails.
func Failed(os []Outcome) bool {
	for _, o := range os {
		if !o.Holds {
			return true
		}
	}
	return false
}

// toPoint reads an event; gone reports a connection leaving the table.
func toPoint(e *events.Event) (p point, gone bool) {
	p = point{at: e.Time, from: e.From, kind: e.Kind, closer: e.Closer, nth: e.Nth}
	if e.Fired() {
		p.rule = e.Rule
	}
	p.states[statetrack.Client], p.states[statetrack.Server] = e.ClientState, e.ServerState
	_, gone = e.Reason.Gone()
	return p, gone
}

// examples keeps the MaxListed earliest counter-examples, in time order,
// and counts all of them.
type examples struct {
	list []CounterExample
	n    uint64
}

// add counts a counter-example at at on c, and lists it if it is among
// the MaxListed earliest; what, which says what happened, is called only
// then (most counter-examples of a long run are counted, not listed).
func (x *examples) add(c *conn, at time.Time, what func() string) {
	x.n++
	i, _ := slices.BinarySearchFunc(x.list, at, func(ce CounterExample, t time.Time) int { return ce.At.Compare(t) })
	for i < len(x.list) && x.list[i].At.Equal(at) {
		i++ // ties keep the order of detection
	}
	if i >= MaxListed {
		return
	}
	x.list = slices.Insert(x.list, i, CounterExample{Conn: c.name(), ConnID: c.id, At: at, What: what()})
	if len(x.list) > MaxListed {
		x.list = x.list[:MaxListed]
	}
}

// outcome returns an outcome that holds when there is no counter-example.
func (x *examples) outcome(figure string) Outcome {
	return Outcome{Holds: x.n == 0, Figure: figure, CounterExamples: x.list, Failures: x.n}
}
