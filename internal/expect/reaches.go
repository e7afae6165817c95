package expect

import (
	"fmt"
	"time"
)

// Type returns "reaches".
func (r *Reaches) Type() string { return "reaches" }

// String says what r requires, e.g. "every connection reaches TIME_WAIT
// at the client".
func (r *Reaches) String() string {
	who := "every connection reaches"
	if r.Connections > 0 {
		who = fmt.Sprintf("at least %d connections reach", r.Connections)
	}
	where := "at either endpoint"
	if r.From != nil {
		where = "at the " + r.From.String()
	}
	return fmt.Sprintf("%s %s %s", who, r.State, where)
}

func (r *Reaches) start() tally { return &reachesTally{r: r, open: make(map[uint64]bool)} }

type reachesTally struct {
	r *Reaches
	// open says, by open connection, whether it reached the state.
	open          map[uint64]bool
	reached, seen uint64
	x             examples
}

func (t *reachesTally) observe(p *point, c *conn) {
	if t.open[c.id] {
		return
	}
	r := t.r
	t.open[c.id] = r.From == nil && (p.states[0] == r.State || p.states[1] == r.State) ||
		r.From != nil && p.states[*r.From] == r.State
}

func (t *reachesTally) gone(c *conn, _ time.Time) {
	reached, ok := t.open[c.id]
	if !ok {
		return
	}
	delete(t.open, c.id)
	t.seen++
	if reached {
		t.reached++
		return
	}
	where := "either endpoint"
	if t.r.From != nil {
		where = "the " + t.r.From.String()
	}
	t.x.add(c, c.first, func() string { return fmt.Sprintf("%s never reached %s", where, t.r.State) })
}

func (t *reachesTally) end(time.Time, facts) Outcome {
	o := t.x.outcome(fmt.Sprintf("%d of %d connections reached %s", t.reached, t.seen, t.r.State))
	o.Measured.Reached, o.Measured.Connections = t.reached, t.seen
	switch {
	case t.r.Connections > 0:
		o.Holds = t.reached >= t.r.Connections
	case t.seen == 0:
		o.Holds = false
		o.Figure = "no connection was seen"
	}
	return o
}
