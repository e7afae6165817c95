package expect

import (
	"fmt"
	"time"
)

// Type returns "hits".
func (h *Hits) Type() string { return "hits" }

// String says what h requires, e.g. `rule "lose-first-syn" acts on
// exactly 1 packet`.
func (h *Hits) String() string {
	var n string
	one := h.Max != nil && *h.Max == 1
	switch {
	case h.Min != nil && h.Max != nil && *h.Min == *h.Max:
		n = fmt.Sprintf("exactly %d", *h.Min)
	case h.Min != nil && h.Max != nil:
		n = fmt.Sprintf("%d to %d", *h.Min, *h.Max)
	case h.Min != nil:
		n = fmt.Sprintf("at least %d", *h.Min)
	case h.Max != nil:
		n = fmt.Sprintf("at most %d", *h.Max)
	default:
		n = "any number of"
	}
	if one {
		return fmt.Sprintf("rule %q acts on %s packet", h.Rule, n)
	}
	return fmt.Sprintf("rule %q acts on %s packets", h.Rule, n)
}

func (h *Hits) start() tally { return hitsTally{h} }

type hitsTally struct{ h *Hits }

func (hitsTally) observe(*point, *conn) {}
func (hitsTally) gone(*conn, time.Time) {}

func (t hitsTally) end(_ time.Time, f facts) Outcome {
	n := f.hits[t.h.Rule]
	holds := (t.h.Min == nil || n >= *t.h.Min) && (t.h.Max == nil || n <= *t.h.Max)
	return Outcome{Holds: holds, Figure: count(n, "hit"), Measured: Measured{Hits: n}}
}
