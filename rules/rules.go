// Package rules owns tcpchaos's rule model (Rule, Match, Action and the
// action types, with their forms, checks and defaults), compiles rules and
// decides, packet by packet, what tcpchaos does: accept, drop, delay or
// duplicate. A config decoder fills these types; it does not define them.
//
// A Set is compiled once from the validated rules of a config and never
// changes (a reload compiles a new Set). Each queue worker decides with an
// Engine of its own, which holds the seeded random source; Engines built
// from one Set share the Set's per-rule limits. The package is pure: it
// reads no clock, and the same seed with the same observations gives the
// same decisions.
//
// Rules are tried in order and the first rule whose match selects the
// packet decides. When that rule's probability draw fails, or its limit is
// used up, the packet is accepted: it does not fall through to later rules,
// so that "drop the first SYN with probability 0.3" never turns into
// whatever a broader rule further down does to SYNs. A disabled rule
// (Set.SetEnabled) is skipped as if it were not in the Set: a later rule
// may then match.
package rules

import (
	"math"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Set is an immutable, compiled list of rules. Only its limit counters and
// its rules' enabled flags change, atomically, as Engines act and as a
// control client steers (SetEnabled).
type Set struct {
	rules []rule
	names []string
	// faulty has the bit of every kind that some rule may drop, delay or
	// duplicate.
	faulty uint16
	// duplicated has the bit of every kind that some rule may duplicate.
	duplicated uint16
	// states has the bit of every sender state that some rule that may
	// act selects on (Match.States; a rule without it adds nothing).
	states uint16
	// idle reports that some rule that may act selects on Match.Idle.
	idle bool
	// dataNth is the highest Match.Nth, per sender and data-phase kind,
	// of the rules that may act on such packets; dataAnyNth reports that
	// one of them selects no Nth (see QuietAfter).
	dataNth    statetrack.DataBounds
	dataAnyNth bool
	// darkens reports that some rule that may act is a blackhole.
	darkens bool
	// acted counts, per rule, the packets acted on by every Engine of the
	// Set; it enforces the limits.
	acted []atomic.Uint64
	// disabled flags, per rule, a rule that Engines skip (SetEnabled).
	disabled []atomic.Bool
}

// rule is one compiled rule: every selector is a bitset or a short list.
type rule struct {
	kinds  uint16 // bit per Kind; all set for any kind
	states uint16 // bit per sender State; all set for any state
	closer statetrack.Closer
	from   int8 // -1 for either side, else a statetrack.Side
	rexmit int8 // -1 for either, 0 originals only, 1 retransmissions only
	nth    uint32
	idle   time.Duration // 0 for any gap
	ports  *portSet      // nil for any server port
	src    []netip.Prefix
	dst    []netip.Prefix
	action Action
	// resets and darkens are action.Type's SendsResets and Darkens, for
	// Decide to test without looking the type up on every packet.
	resets, darkens bool
	prob            float64 // in [0,1]
	limit           uint64  // 0 for none
}

// portSet is a bitset of the 65536 TCP ports.
type portSet [65536 / 64]uint64

func (p *portSet) add(port uint16)      { p[port/64] |= 1 << (port % 64) }
func (p *portSet) has(port uint16) bool { return p[port/64]&(1<<(port%64)) != 0 }

const allBits = math.MaxUint16

// bit returns the mask bit of a kind or state (0 when out of range, so an
// invalid value matches only rules that do not select on it).
func bit[T statetrack.Kind | statetrack.State](v T) uint16 {
	if v >= 16 {
		return 0
	}
	return 1 << v
}

// Compile builds a Set from valid rules (as a config decoder checks them:
// see ParseAction, Form and CheckProbability). It copies what it keeps, so
// rs may be reused.
func Compile(rs []Rule) *Set {
	s := &Set{
		rules:    make([]rule, len(rs)),
		names:    make([]string, len(rs)),
		acted:    make([]atomic.Uint64, len(rs)),
		disabled: make([]atomic.Bool, len(rs)),
	}
	for i, r := range rs {
		s.names[i] = r.Name
		c := compile(r)
		if c.action.Type.Faulty() && c.prob > 0 {
			s.faulty |= c.kinds
			s.idle = s.idle || c.idle > 0
			if c.states != allBits {
				s.states |= c.states
			}
			s.darkens = s.darkens || c.action.Type.Darkens()
			if c.action.Type.SendsCopies() {
				s.duplicated |= c.kinds
			}
			s.boundData(&c)
		}
		s.rules[i] = c
	}
	return s
}

func compile(r Rule) rule {
	m := r.Match
	c := rule{
		kinds: allBits, states: allBits, closer: m.Closer, from: -1, rexmit: -1, nth: m.Nth, idle: m.Idle,
		src: slices.Clone(m.Src), dst: slices.Clone(m.Dst),
		action: r.Action, resets: r.Action.Type.SendsResets(), darkens: r.Action.Type.Darkens(),
		prob: r.Probability, limit: r.Limit,
	}
	if len(m.Packets) > 0 {
		c.kinds = 0
		for _, k := range m.Packets {
			c.kinds |= bit(k)
		}
	}
	if m.Closer != statetrack.NoCloser {
		c.kinds &= bit(statetrack.Fin)
	}
	if len(m.States) > 0 {
		c.states = 0
		for _, st := range m.States {
			c.states |= bit(st)
		}
	}
	if m.From != nil {
		c.from = int8(*m.From)
	}
	if m.Retransmission != nil {
		c.rexmit = 0
		if *m.Retransmission {
			c.rexmit = 1
		}
	}
	if len(m.Ports) > 0 {
		c.ports = new(portSet)
		for _, p := range m.Ports {
			c.ports.add(p)
		}
	}
	switch {
	case !(c.prob > 0): // also NaN
		c.prob = 0
	case c.prob > 1:
		c.prob = 1
	}
	return c
}

// Len returns the number of rules.
func (s *Set) Len() int { return len(s.rules) }

// Names returns the rules' names, indexed as Decision.Rule and Hits.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// Action returns what rule i does.
func (s *Set) Action(i int) ActionType { return s.rules[i].action.Type }

// MayMatch reports whether some rule may drop, delay or duplicate a packet
// of kind k. When it reports false for every kind of a connection phase,
// those packets need not be queued for a decision (they are accepted).
func (s *Set) MayMatch(k statetrack.Kind) bool { return s.faulty&bit(k) != 0 }

// boundData adds rule c, which may act, to the data-phase bounds.
func (s *Set) boundData(c *rule) {
	for j, k := range statetrack.DataKinds {
		if c.kinds&bit(k) == 0 {
			continue
		}
		if c.nth == 0 {
			s.dataAnyNth = true
		}
		for side := range s.dataNth {
			if c.from < 0 || int(c.from) == side {
				s.dataNth[side][j] = max(s.dataNth[side][j], c.nth)
			}
		}
	}
}

// Darkens reports whether some rule may blackhole a connection: only
// then does the live path install what keeps connections dark in the
// kernel.
func (s *Set) Darkens() bool { return s.darkens }

// Quietable reports whether no rule may act on a packet of an established
// connection's data phase (kinds data, ack, keepalive and keepalive-ack)
// and none selects on Match.Idle: the live path may then let that phase
// bypass the queue. The handshake and the close are queued whatever it
// reports, unless QuietHandshake or QuietClose lets part of them bypass
// too.
func (s *Set) Quietable() bool {
	b, ok := s.QuietAfter()
	return ok && b == statetrack.DataBounds{}
}

// QuietAfter reports whether the live path may let the data phase of a
// connection bypass the queue once each of its senders has sent more
// packets of each data-phase kind than after holds
// (statetrack.Tracker.SentPast): every rule that may act on such a packet
// selects one Match.Nth, the highest of which, per sender and kind, after
// holds, and none selects on Match.Idle. The rules' other selectors are
// not considered. ok is false when some rule may act on a data-phase
// packet at any count; after is all 0 for a Quietable set.
func (s *Set) QuietAfter() (after statetrack.DataBounds, ok bool) {
	if s.idle || s.dataAnyNth {
		return statetrack.DataBounds{}, false
	}
	return s.dataNth, true
}

// QuietHandshake reports whether the live path may also leave a
// handshake's third ACK unseen (the quiet handshake): the data phase is
// quiet (Quietable), no rule may act on a handshake-ack, and none that
// may act selects on the sender state SYN_RCVD (the tracker takes the
// server for ESTABLISHED from the SYN-ACK's verdict on).
func (s *Set) QuietHandshake() bool {
	return s.Quietable() && !s.MayMatch(statetrack.HandshakeAck) && s.states&bit(statetrack.SynRcvd) == 0
}

// QuietClose reports whether the live path may also leave unseen what
// passes between a connection's first FIN and the second (the quiet
// close: the ACK of the first FIN, a half-close's data and ACKs): the
// data phase is quiet (Quietable), no rule may act on a fin-ack, and none
// that may act selects on the sender state FIN_WAIT_1 or FIN_WAIT_2 (the
// tracker keeps the closer in FIN_WAIT_1 until the peer's FIN, where the
// closer may be in FIN_WAIT_2).
func (s *Set) QuietClose() bool {
	return s.Quietable() && !s.MayMatch(statetrack.FinAck) && s.states&(bit(statetrack.FinWait1)|bit(statetrack.FinWait2)) == 0
}

// payloadKinds are the kinds a packet with payload can have: data, and the
// control kinds that may carry some (a SYN with TCP Fast Open data, a FIN
// or an RST with data). The pure ACKs of the handshake and the close have
// none by definition.
const payloadKinds = 1<<statetrack.Syn | 1<<statetrack.SynAck | 1<<statetrack.Fin | 1<<statetrack.Rst | 1<<statetrack.Data

// NeedsPayload reports whether some rule may duplicate a packet that
// carries payload: only then must the live path copy whole packets from
// the kernel (a copy is sent whole); otherwise the headers suffice.
func (s *Set) NeedsPayload() bool { return s.duplicated&payloadKinds != 0 }

// Hits returns, per rule, the packets acted on by all the Set's Engines.
func (s *Set) Hits() []uint64 {
	h := make([]uint64, len(s.acted))
	for i := range s.acted {
		h[i] = s.acted[i].Load()
	}
	return h
}

// take counts one more packet acted on by rule i, and reports false (not
// counting it) when the rule's limit is already reached.
func (s *Set) take(i int, limit uint64) bool {
	c := &s.acted[i]
	if limit == 0 {
		c.Add(1)
		return true
	}
	for {
		n := c.Load()
		if n >= limit {
			return false
		}
		if c.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// matches reports whether every selector of r accepts o.
func (r *rule) matches(o *statetrack.Observation) bool {
	switch {
	case r.kinds&bit(o.Kind) == 0,
		r.states&bit(o.Before[o.From]) == 0,
		r.closer != statetrack.NoCloser && o.Closer != r.closer,
		r.from >= 0 && statetrack.Side(r.from) != o.From,
		r.nth != 0 && o.Nth != r.nth,
		o.Idle < r.idle,
		r.rexmit >= 0 && o.Retransmission != (r.rexmit == 1),
		r.ports != nil && !r.ports.has(o.Server.Port()):
		return false
	}
	return inAny(r.src, o.Seg.Src.Addr()) && inAny(r.dst, o.Seg.Dst.Addr())
}

// inAny reports whether a is in one of ps; an empty ps holds every address.
// An IPv4-mapped IPv6 address counts as the IPv4 address.
func inAny(ps []netip.Prefix, a netip.Addr) bool {
	if len(ps) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
