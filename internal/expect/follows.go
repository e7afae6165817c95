package expect

import (
	"fmt"
	"strings"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Type returns "follows".
func (f *Follows) Type() string { return "follows" }

// String says what f requires, e.g. `each time rule "lose-first-syn"
// fires, a syn from the client follows in the same connection within 2s`.
func (f *Follows) String() string {
	return fmt.Sprintf("each time rule %q fires, %s within %s", f.Rule, f.reaction(), f.Within)
}

// reaction names what must follow.
func (f *Follows) reaction() string {
	if f.Packet == 0 {
		return "the faulted packet's receiver reaches " + f.State.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "a %s", f.Packet)
	if f.Closer != statetrack.NoCloser {
		fmt.Fprintf(&b, " (%s close)", f.Closer)
	}
	if f.Nth > 0 {
		fmt.Fprintf(&b, " #%d", f.Nth)
	}
	if f.From != nil {
		fmt.Fprintf(&b, " from the %s", *f.From)
	}
	b.WriteString(" follows in the same connection")
	return b.String()
}

func (f *Follows) start() tally {
	return &followsTally{f: f, pending: make(map[uint64][]firing)}
}

// firing is a firing of the rule still waiting for its reaction.
type firing struct {
	at       time.Time
	receiver statetrack.Side
}

type followsTally struct {
	f       *Follows
	pending map[uint64][]firing // by connection, in time order
	m       Measured
	x       examples
}

func (t *followsTally) observe(p *point, c *conn) {
	list := t.pending[c.id]
	kept := list[:0]
	for _, fi := range list {
		switch {
		case p.at.Sub(fi.at) > t.f.Within:
			t.missed(c, fi, p.at)
		case t.reacts(p, fi):
			t.reacted(c, fi, p.at.Sub(fi.at))
		default:
			kept = append(kept, fi)
		}
	}
	if p.rule == t.f.Rule && p.kind != 0 {
		t.m.Firings++
		kept = append(kept, firing{at: p.at, receiver: p.from.Other()})
	}
	if len(kept) == 0 {
		delete(t.pending, c.id)
	} else {
		t.pending[c.id] = kept
	}
}

// reacts reports whether p is the reaction fi waits for.
func (t *followsTally) reacts(p *point, fi firing) bool {
	f := t.f
	if f.Packet == 0 {
		return p.states[fi.receiver] == f.State
	}
	return p.kind == f.Packet && (f.From == nil || p.from == *f.From) &&
		(f.Closer == statetrack.NoCloser || p.closer == f.Closer) && (f.Nth == 0 || p.nth == f.Nth)
}

func (t *followsTally) reacted(c *conn, fi firing, gap time.Duration) {
	m := &t.m
	if m.Reactions == 0 || gap < m.GapMin {
		m.GapMin = gap
	}
	m.GapMax = max(m.GapMax, gap)
	m.Reactions++
	if len(m.Gaps) < MaxListed {
		m.Gaps = append(m.Gaps, Gap{Conn: c.name(), At: fi.at, Gap: gap})
	}
}

// missed records a firing whose reaction was not seen by until.
func (t *followsTally) missed(c *conn, fi firing, until time.Time) {
	t.x.add(c, fi.at, func() string {
		if waited := until.Sub(fi.at); waited < t.f.Within {
			return fmt.Sprintf("rule %s fired, then no reaction in the %s the connection was still seen", t.f.Rule, waited.Round(time.Microsecond))
		}
		return fmt.Sprintf("rule %s fired, then no reaction within %s", t.f.Rule, t.f.Within)
	})
}

func (t *followsTally) gone(c *conn, at time.Time) {
	for _, fi := range t.pending[c.id] {
		t.missed(c, fi, at)
	}
	delete(t.pending, c.id)
}

func (t *followsTally) end(_ time.Time, _ facts) Outcome {
	m := t.m
	var figure string
	switch {
	case m.Firings == 0:
		figure = "the rule never fired"
	case m.Reactions == 0:
		figure = fmt.Sprintf("%s, none followed within %s", count(m.Firings, "firing"), t.f.Within)
	default:
		figure = fmt.Sprintf("%d of %d firings followed, after %s", m.Reactions, m.Firings, span(m.GapMin, m.GapMax))
	}
	o := t.x.outcome(figure)
	o.Measured = m
	return o
}

// count renders n things: "1 firing", "3 firings".
func count(n uint64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// span renders a range of durations: "1.02s" or "1.02s to 3.1s".
func span(lo, hi time.Duration) string {
	lo, hi = lo.Round(time.Millisecond), hi.Round(time.Millisecond)
	if lo == hi {
		return lo.String()
	}
	return lo.String() + " to " + hi.String()
}
