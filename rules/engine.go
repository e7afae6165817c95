package rules

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Decision is what to do with one packet. It is returned and copied on
// every packet, so its fields are ordered to pack it in 64 bytes: the
// one-byte and four-byte ones first.
type Decision struct {
	// Action is Accept when no rule acted, or when an accept rule did.
	Action ActionType
	// Reset and OutsideWindow are a reset's parameters; Verdict.Resets
	// derives the RSTs it sends from them (a Decision does not carry
	// them: only a reset needs them).
	Reset         Endpoints
	OutsideWindow bool
	// Dark and For are a blackhole's directions and how long it lasts (0:
	// forever), set on the packet that matched it: the connection is dark
	// from this packet on. Action is Blackhole when the packet itself
	// travels in a dark direction (it is dropped), Accept when it travels
	// the other way. A packet dropped because its connection was already
	// dark has Action Blackhole and no Dark.
	Dark Endpoints
	// Copies and After: a duplicated packet is let through now, and Copies
	// copies of it are sent After later.
	Copies uint32
	// Hold is how long a delayed packet is held: the rule's delay plus its
	// jitter draw, never negative.
	Hold  time.Duration
	After time.Duration
	For   time.Duration
	// Rule is the index of the rule that acted, or -1 when none did: no
	// rule matched, or the first rule that matched did not act because its
	// probability draw failed or its limit was used up.
	Rule int
	// RuleName is that rule's name ("" when none acted). Unlike Rule, an
	// index into the Set that decided, it still names the rule after a
	// reload swapped the Set, for a packet held or a copy pending across
	// it.
	RuleName string
}

// stream is the second word of every Engine's PCG state ("tcpchaos" in
// ASCII), so that the seed alone picks the stream.
const stream = 0x7463706368616f73

// Engine decides for one queue worker. It is not safe for concurrent use;
// give each worker its own, with a seed of its own (for example the config
// seed plus the worker's index) when their draws must differ.
type Engine struct {
	set  *Set
	rng  *rand.Rand
	hits []uint64
}

// NewEngine returns an Engine deciding by s, drawing from a PCG generator
// seeded with seed.
func NewEngine(s *Set, seed uint64) *Engine {
	return &Engine{set: s, rng: rand.New(rand.NewPCG(seed, stream)), hits: make([]uint64, s.Len())}
}

// Decide returns the decision for one observed packet. It does not
// allocate.
//
// A rule with probability p strictly between 0 and 1 draws once per
// matching packet, before its limit is consulted, so an Engine's draws
// depend only on its own packets, not on what other Engines sharing the
// limit did. A delay with jitter J draws once more, uniformly in [-J, +J].
func (e *Engine) Decide(o *statetrack.Observation) Decision {
	rs := e.set.rules // loaded once, not after every call of matches
	for i := range rs {
		r := &rs[i]
		if r.matches(o) && !e.set.disabled[i].Load() {
			d := e.act(i, r)
			if d.Rule < 0 {
				return d
			}
			if r.resets {
				d.Reset, d.OutsideWindow = r.action.Reset, r.action.OutsideWindow
			}
			if r.darkens {
				d = darkens(d, o, &r.action)
			}
			return d
		}
	}
	return Decision{Rule: -1}
}

// act applies matching rule i, subject to its probability and limit.
func (e *Engine) act(i int, r *rule) Decision {
	if r.prob < 1 && (r.prob == 0 || e.rng.Float64() >= r.prob) {
		return Decision{Rule: -1}
	}
	if !e.set.take(i, r.limit) {
		return Decision{Rule: -1}
	}
	e.hits[i]++
	d := Decision{Action: r.action.Type, Rule: i, RuleName: e.set.names[i]}
	if d.Action.Holds() {
		d.Hold = e.hold(r.action.Delay, r.action.Jitter)
	}
	if d.Action.SendsCopies() {
		d.Copies, d.After = r.action.Copies, r.action.After
	}
	return d
}

// hold returns delay plus a uniform draw in [-jitter, +jitter], clamped at
// zero.
func (e *Engine) hold(delay, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return max(delay, 0)
	}
	j := uint64(jitter)
	u := e.rng.Uint64N(2*j + 1) // in [0, 2J]: u-J is the offset
	if u >= j {
		return max(delay+time.Duration(u-j), 0)
	}
	return max(delay-time.Duration(j-u), 0)
}

// Hits returns, per rule, the packets this Engine acted on. Set.Hits sums
// every Engine of the Set.
func (e *Engine) Hits() []uint64 { return slices.Clone(e.hits) }
