package pipeline

import (
	"cmp"
	"net/netip"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// darkConn is a connection a blackhole darkened, as the pipeline keeps it
// dark: the packets of it that still reach the pipeline in a dark
// direction (an RST, which the live path's kernel rules let through to be
// tracked; a packet queued before the kernel knew; under replay, every
// packet) are dropped.
type darkConn struct {
	dirs rules.Endpoints
	// until is when the connection heals; zero: never.
	until time.Time
	// rule and name are the darkening rule's index and name (the name
	// outlives a reload that renumbers the rules).
	rule int
	name string
	// client, server and states are the connection as last delivered,
	// for the healed event.
	client, server netip.AddrPort
	states         [2]statetrack.State
	// seq names the connection's entry in the heal queue (healAt.seq),
	// queued is that entry's time; seq zero: none.
	seq    uint64
	queued time.Time
}

// healAt is an entry of the heal queue: connection id, whose darkConn has
// seq, heals at at, or later if it was darkened again since. An entry
// whose connection healed, left or was darkened anew (another seq) is
// stale and dropped when it comes up.
type healAt struct {
	at  time.Time
	id  uint64
	seq uint64
}

// Before orders the heal queue by time, then ConnID (minheap.Ordered).
func (e healAt) Before(o healAt) bool {
	return cmp.Or(e.at.Compare(o.at), cmp.Compare(e.id, o.id)) < 0
}

// darkened reports whether the packet seen in o travels in a dark
// direction of its connection at now, and if so sets *d to the decision
// that drops it: Blackhole by the darkening rule, without Dark. A
// blackhole whose time ran out heals first.
func (p *Pipeline) darkened(o *statetrack.Observation, now time.Time, d *rules.Decision) bool {
	dc, found := p.dark[o.ConnID]
	if !found {
		return false
	}
	if !dc.until.IsZero() && !now.Before(dc.until) {
		p.heal(o.ConnID, dc)
		return false
	}
	if !dc.dirs.Has(o.From.Other()) {
		return false
	}
	*d = rules.Decision{Action: rules.Blackhole, Rule: dc.rule, RuleName: dc.name}
	return true
}

// darken starts the blackhole decision d made on the packet seen in o at
// now. A connection darkened again adds the new directions and heals when
// the new blackhole does.
func (p *Pipeline) darken(o *statetrack.Observation, d *rules.Decision, now time.Time, states [2]statetrack.State) {
	if o.ConnID == 0 {
		return
	}
	dc := p.dark[o.ConnID]
	dc.dirs |= d.Dark
	dc.rule, dc.name, dc.client, dc.server, dc.states = d.Rule, d.RuleName, o.Client, o.Server, states
	dc.until = time.Time{}
	if d.For > 0 {
		dc.until = now.Add(d.For)
		// One entry a connection: healDue puts it back when it comes up
		// early; one for an earlier time replaces it.
		if dc.seq == 0 || dc.until.Before(dc.queued) {
			p.healSeq++
			dc.seq, dc.queued = p.healSeq, dc.until
			p.heals.Push(healAt{dc.until, o.ConnID, dc.seq})
		}
	}
	p.dark[o.ConnID] = dc
}

// track keeps connection id's states as last delivered, if it is dark,
// for its healed event.
func (p *Pipeline) track(id uint64, states [2]statetrack.State) {
	if len(p.dark) == 0 {
		return
	}
	if dc, ok := p.dark[id]; ok {
		dc.states = states
		p.dark[id] = dc
	}
}

// healDue heals every blackhole whose time ran out by now, earliest
// first (then by ConnID), taking from the heal queue only what is due.
func (p *Pipeline) healDue(now time.Time) {
	for len(p.heals) > 0 && !now.Before(p.heals[0].at) {
		e := p.heals.Pop()
		dc, ok := p.dark[e.id]
		switch {
		case !ok || dc.seq != e.seq: // stale
		case dc.until.IsZero(): // darkened again for ever
			dc.seq = 0
			p.dark[e.id] = dc
		case now.Before(dc.until): // darkened again since: later
			dc.queued = dc.until
			p.dark[e.id] = dc
			p.heals.Push(healAt{dc.until, e.id, e.seq})
		default:
			p.heal(e.id, dc)
		}
	}
}

// heal ends connection id's blackhole, with a "healed" state event at the
// time it ran out.
func (p *Pipeline) heal(id uint64, dc darkConn) {
	delete(p.dark, id)
	p.stats.Healed++
	if p.sink == nil {
		return
	}
	e := stateEvent(dc.until, dc.client, dc.server, id, dc.states, events.Healed)
	e.Rule, e.Action, e.Dark = dc.name, rules.Blackhole, dc.dirs
	p.sink.Emit(e)
}
