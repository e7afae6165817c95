package expect

import (
	"fmt"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Type returns "never".
func (n *Never) Type() string { return "never" }

// String says what n requires, e.g. "no endpoint stays in LAST_ACK longer
// than 5s".
func (n *Never) String() string {
	return fmt.Sprintf("no endpoint stays in %s longer than %s", n.State, n.LongerThan)
}

func (n *Never) start() tally {
	return &neverTally{n: n, since: make(map[uint64][2]time.Time)}
}

// stay is an endpoint still in the state when its connection left the
// table: it counts on until the end of the run.
type stay struct {
	c     *conn
	side  statetrack.Side
	since time.Time
}

type neverTally struct {
	n *Never
	// since holds, by connection, when each endpoint entered the state
	// (zero: not in it); a connection with neither is absent.
	since   map[uint64][2]time.Time
	stays   []stay
	longest time.Duration
	where   string
	x       examples
}

func (t *neverTally) observe(p *point, c *conn) {
	s, had := t.since[c.id]
	for side := range s {
		in := p.states[side] == t.n.State
		switch {
		case in && s[side].IsZero():
			s[side] = p.at
		case !in && !s[side].IsZero():
			t.left(c, statetrack.Side(side), s[side], p.at, "")
			s[side] = time.Time{}
		}
	}
	switch {
	case s[0].IsZero() && s[1].IsZero():
		if had {
			delete(t.since, c.id)
		}
	default:
		t.since[c.id] = s
	}
}

// left records that an endpoint was in the state from since to until.
func (t *neverTally) left(c *conn, side statetrack.Side, since, until time.Time, note string) {
	d := until.Sub(since)
	if d > t.longest || t.where == "" {
		t.longest, t.where = d, c.name()
	}
	if d > t.n.LongerThan {
		t.x.add(c, since, func() string {
			return fmt.Sprintf("the %s stayed in %s for %s%s", side, t.n.State, d.Round(time.Microsecond), note)
		})
	}
}

func (t *neverTally) gone(c *conn, at time.Time) {
	s := t.since[c.id]
	for side, since := range s {
		if !since.IsZero() {
			t.stays = append(t.stays, stay{c: c, side: statetrack.Side(side), since: since})
		}
	}
	delete(t.since, c.id)
}

func (t *neverTally) end(at time.Time, _ facts) Outcome {
	for _, s := range t.stays {
		t.left(s.c, s.side, s.since, at, " (still there at the end)")
	}
	figure := fmt.Sprintf("no endpoint entered %s", t.n.State)
	if t.where != "" {
		figure = fmt.Sprintf("longest stay in %s %s (%s)", t.n.State, t.longest.Round(time.Millisecond), t.where)
	}
	o := t.x.outcome(figure)
	o.Measured.Longest, o.Measured.LongestConn = t.longest, t.where
	return o
}
