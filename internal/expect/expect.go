// Package expect owns the checks of a config's `expect:` section (how the
// real stacks reacted to the faults: a reaction within a bound, no endpoint
// stuck in a state, every connection reaching a state, a rule's hit count,
// the command's exit status) and evaluates them from the tracker's events,
// incrementally, connection by connection: it keeps what each open
// connection still owes an expectation, never the events themselves.
//
// An Evaluator is fed the events of a run (Emit), told the command's exit
// status when a command ran (Exited), and asked for the outcome at the end
// (End). Live `run` and offline `replay` feed it the same events.
package expect

import (
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Expectation is one named check.
type Expectation struct {
	// Name identifies the expectation in the outcome and the reports.
	Name string
	// Check is what must hold: a *Follows, *Never, *Reaches, *Hits or
	// *Exit.
	Check Check
}

// Check is one kind of expectation. Its methods say what it requires and
// start its evaluation.
type Check interface {
	// Type is the check's key in the config ("follows", "never", ...).
	Type() string
	// String says in words what the check requires.
	String() string
	// start returns a fresh evaluation of the check.
	start() tally
}

// tally is the running evaluation of one check over one run.
type tally interface {
	// observe takes one event of the connection c.
	observe(e *point, c *conn)
	// gone is called once the connection c left the tracker's table at at:
	// it will see no more events.
	gone(c *conn, at time.Time)
	// end returns the outcome when the run ended at at; status is the
	// command's exit status, nil when no command ran.
	end(at time.Time, f facts) Outcome
}

// facts are what the end of a run tells every check besides the events.
type facts struct {
	// status is the command's exit status, nil when no command ran.
	status *int
	// hits are the rules' hit counts by rule name.
	hits map[string]uint64
}

// Follows requires that each time Rule fired, a reaction followed in the
// same connection within Within: a packet of kind Packet (with the
// optional From, Closer and Nth as in a rule's match), or, when Packet is
// zero, the faulted packet's receiver reaching State.
type Follows struct {
	Rule   string
	Packet statetrack.Kind
	// State is the state the receiver must reach when Packet is zero.
	State  statetrack.State
	From   *statetrack.Side
	Closer statetrack.Closer
	Nth    uint32
	Within time.Duration
}

// Never requires that no endpoint of any connection stays in State longer
// than LongerThan. An endpoint still in State when the run ends counts
// from its entry to the end of the run.
type Never struct {
	State      statetrack.State
	LongerThan time.Duration
}

// Reaches requires that every connection (Connections 0) or at least
// Connections connections reach State at one endpoint (From nil) or at
// the endpoint From.
type Reaches struct {
	State       statetrack.State
	From        *statetrack.Side
	Connections uint64
}

// Hits requires that Rule's hit count lies in [Min, Max]; a nil bound is
// open.
type Hits struct {
	Rule     string
	Min, Max *uint64
}

// Exit requires the command's exit status to be Status, or, with Nonzero,
// anything but 0.
type Exit struct {
	Status  int
	Nonzero bool
}

// DefaultExit is the expectation added when a command ran and no Exit
// says otherwise: its exit status must be 0.
const DefaultExit = "exit-status"

// Outcome is how one expectation fared.
type Outcome struct {
	// Name and Type are the expectation's; Text says in words what it
	// requires.
	Name, Type, Text string
	// Holds reports whether the expectation held. A skipped expectation
	// (Skipped says why, e.g. an exit status when no command ran) holds.
	Holds   bool
	Skipped string
	// Figure is the measured figure in words ("3 firings, each followed
	// within 1.02s at most").
	Figure   string
	Measured Measured
	// CounterExamples are the first counter-examples, in time order;
	// Failures counts them all.
	CounterExamples []CounterExample
	Failures        uint64
	// EventsLost counts the run's events that never reached the
	// evaluator: when not 0, the outcome rests on incomplete events.
	EventsLost uint64
}

// Measured holds the figures an expectation measured; only those of its
// type are set.
type Measured struct {
	// Firings counts the rule's firings (follows), Reactions those that a
	// reaction followed within the bound, Gaps the first MaxListed of the
	// measured gaps, GapMin and GapMax their range over every reaction.
	Firings, Reactions uint64
	Gaps               []Gap
	GapMin, GapMax     time.Duration
	// Longest is the longest time an endpoint spent in the state (never),
	// and LongestConn the connection where it did.
	Longest     time.Duration
	LongestConn string
	// Reached counts the connections that reached the state, of
	// Connections seen (reaches).
	Reached, Connections uint64
	// Hits is the rule's hit count (hits).
	Hits uint64
	// Status is the command's exit status (exit), nil when no command ran.
	Status *int
}

// Gap is one measured reaction: the firing at At in Conn, followed after
// Gap.
type Gap struct {
	Conn string
	At   time.Time
	Gap  time.Duration
}

// CounterExample is one case where an expectation did not hold: the
// connection, when, and what happened.
type CounterExample struct {
	Conn   string
	ConnID uint64
	At     time.Time
	What   string
}

// MaxListed bounds the gaps and counter-examples an outcome lists (the
// counts cover them all), so that memory stays bounded on a long run.
const MaxListed = 20
