// Package pipeline joins the tracker, the rule engine and the event stream:
// the one place where a decoded packet becomes a verdict. The live queue and
// the offline replay both drive it, so every decision can be tested without
// root.
package pipeline

import (
	"net/netip"
	"slices"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/minheap"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Pipeline classifies packets, decides their fate and reports events. It is
// not safe for concurrent use: each queue worker owns one.
type Pipeline struct {
	tracker *statetrack.Tracker
	engine  *rules.Engine
	names   []string // rule names, by index
	sink    events.Sink
	stats   Stats
	// quietable: Handle may set Verdict.Quiet (allowQuiet, and the rules
	// cannot act on the data phase, or only on its first packets:
	// rules.Set.QuietAfter).
	quietable, allowQuiet bool
	// dataAfter is what a connection's senders must have sent before its
	// data phase may go quiet (rules.Set.QuietAfter); dataBounded: it is
	// not all 0.
	dataAfter   statetrack.DataBounds
	dataBounded bool
	// phases are the quiet phases Handle may start besides the data
	// phase: those of allowPhases that the rules permit, when quietable.
	phases, allowPhases QuietPhases
	set                 *rules.Set
	// onGone is the tracker config's own OnGone (nil: none).
	onGone func(statetrack.Gone)
	// dark holds the connections blackholes darkened, by ConnID, until
	// they heal or leave the tracker (see dark.go); heals is the queue of
	// their heals, healSeq the last healAt.seq given.
	dark    map[uint64]darkConn
	heals   minheap.Heap[healAt]
	healSeq uint64
}

// Stats counts what a pipeline saw and did.
type Stats struct {
	// Packets counts packets by kind (indexed by statetrack.Kind).
	Packets [statetrack.Ack + 1]uint64
	// Actions counts packets by the action taken (indexed by
	// rules.ActionType).
	Actions [rules.NumActionTypes]uint64
	// KindActions counts packets by kind and action taken (indexed by
	// statetrack.Kind, then rules.ActionType): Packets and Actions are
	// its sums.
	KindActions [statetrack.Ack + 1][rules.NumActionTypes]uint64
	// Injected counts the RSTs that reset actions sent.
	Injected uint64
	// Healed counts the blackholes whose time ran out.
	Healed uint64
}

// Add adds o's counts to s.
func (s *Stats) Add(o Stats) {
	for i := range s.Packets {
		s.Packets[i] += o.Packets[i]
	}
	for i := range s.Actions {
		s.Actions[i] += o.Actions[i]
	}
	for k := range s.KindActions {
		for a := range s.KindActions[k] {
			s.KindActions[k][a] += o.KindActions[k][a]
		}
	}
	s.Injected += o.Injected
	s.Healed += o.Healed
}

// New returns a pipeline with a fresh tracker configured by tc, deciding
// with set and seed, and reporting to sink (nil: no events). tc.OnGone,
// when set, is called for every connection that leaves the table after its
// event is emitted.
func New(tc statetrack.Config, set *rules.Set, seed uint64, sink events.Sink) *Pipeline {
	p := &Pipeline{names: set.Names(), sink: sink, engine: rules.NewEngine(set, seed), set: set, onGone: tc.OnGone,
		dark: make(map[uint64]darkConn)}
	tc.OnGone = p.gone
	p.tracker = statetrack.New(tc)
	return p
}

// NewQueues returns the pipelines of n queues side by side (a live run's
// intercept.queues), pipeline i as New makes it with seed+i and tc, its
// tracker shard i of n (tc.Shard, tc.Shards: no ConnID of one pipeline is
// another's, so the events, trails and expectations of the run tell their
// connections apart) with onGone(i) for tc.OnGone (onGone nil: none).
func NewQueues(n int, tc statetrack.Config, set *rules.Set, seed uint64, sink events.Sink, onGone func(i int) func(statetrack.Gone)) []*Pipeline {
	pipes := make([]*Pipeline, n)
	for i := range pipes {
		tc.Shard, tc.Shards, tc.OnGone = i, n, nil
		if onGone != nil {
			tc.OnGone = onGone(i)
		}
		pipes[i] = New(tc, set, seed+uint64(i), sink)
	}
	return pipes
}

// AllowQuiet lets Handle set Verdict.Quiet, for a live path that lets quiet
// connections bypass it. It has effect only when the rule set cannot act
// on the data phase (rules.Set.Quietable), or only on a connection's
// first packets of it (rules.Set.QuietAfter: a connection goes quiet once
// it is past them); it reports whether it has, and
// that answer is the one decision on quiet connections: the live path
// installs and marks for them only when it is true. The offline replay
// never calls it: there every packet is seen.
func (p *Pipeline) AllowQuiet() bool { return p.SetQuiet(true) }

// SetQuiet lets Handle set Verdict.Quiet from the next packet on (as
// AllowQuiet), or forbids it (on false: for a live path whose bypass of
// the queue is out), and reports what AllowQuiet reports.
func (p *Pipeline) SetQuiet(on bool) bool {
	p.allowQuiet = on
	p.decideQuiet()
	return p.quietable
}

// QuietPhases are the parts of a connection's handshake and close that
// may bypass the queue besides its data phase (see README "What is
// queued").
type QuietPhases struct {
	// Handshake: the third ACK, after the verdict of a SYN-ACK
	// (rules.Set.QuietHandshake; statetrack.Tracker.Quiet takes the ACK
	// as delivered).
	Handshake bool
	// Close: what passes between the first FIN and the second (the ACK
	// of the first FIN, a half-close's data and ACKs), after the verdict
	// of the first FIN (rules.Set.QuietClose).
	Close bool
	// PastNth: the data phase of a connection past the match.nth of the
	// rules that may act on it (rules.Set.QuietAfter), when such rules
	// keep it queued until then.
	PastNth bool
}

// QuietData reports whether, under set, the data phase may go quiet with
// the phases allowed: always when the rules cannot act on it
// (rules.Set.Quietable), past their match.nth when they can act only on
// its first packets and allowed.PastNth.
func QuietData(set *rules.Set, allowed QuietPhases) bool {
	after, ok := set.QuietAfter()
	return ok && (after == statetrack.DataBounds{} || allowed.PastNth)
}

// AllowQuietPhases lets Handle also start the quiet phases of allowed
// (those that no expectation needs to see, say) that the rules permit,
// once AllowQuiet has allowed the data phase and the rules let it go
// quiet. It reports the phases Handle may start from now on; Switch
// decides them again for its set.
func (p *Pipeline) AllowQuietPhases(allowed QuietPhases) QuietPhases {
	p.allowPhases = allowed
	p.decideQuiet()
	return p.phases
}

// QuietPhases reports the quiet phases Handle may start (see
// AllowQuietPhases).
func (p *Pipeline) QuietPhases() QuietPhases { return p.phases }

// decideQuiet decides what Handle may let go quiet with the current set.
func (p *Pipeline) decideQuiet() {
	p.quietable = p.allowQuiet && QuietData(p.set, p.allowPhases)
	p.dataAfter, _ = p.set.QuietAfter()
	p.dataBounded = p.dataAfter != statetrack.DataBounds{}
	p.phases = QuietPhases{
		Handshake: p.quietable && p.allowPhases.Handshake && p.set.QuietHandshake(),
		Close:     p.quietable && p.allowPhases.Close && p.set.QuietClose(),
		PastNth:   p.quietable && p.dataBounded,
	}
}

// Switch makes the pipeline decide with set from the next packet on (a
// reload): the tracked connections stay, the engine's random source goes
// on, its hits follow the rules by name (rules.Engine.Switch), and whether
// Handle may let connections go quiet is decided again for set, with the
// quiet phases (see QuietPhases). It reports whether the data phase may
// go quiet, as AllowQuiet does. Carry set's limits over from the old
// set (rules.Set.Carry) before the first pipeline switches.
func (p *Pipeline) Switch(set *rules.Set) bool {
	p.engine.Switch(set)
	p.names, p.set = set.Names(), set
	p.decideQuiet()
	return p.quietable
}

// SetServerPorts tells the tracker the intercepted server ports from now on
// (statetrack.Tracker.SetServerPorts), for a reload that changes them.
func (p *Pipeline) SetServerPorts(ports []uint16) { p.tracker.SetServerPorts(ports) }

// Rules returns the set the pipeline decides with.
func (p *Pipeline) Rules() *rules.Set { return p.set }

// EachSlot calls f for the tracked connections among up to max slots of
// the connection table from slot from on (statetrack.Tracker.EachSlot): it
// returns the slot to go on from and whether any is left.
func (p *Pipeline) EachSlot(from, max int, f func(statetrack.ConnInfo)) (next int, more bool) {
	return p.tracker.EachSlot(from, max, f)
}

// Handle observes one packet sent at now and decides its fate. An accepted
// or duplicated packet counts as delivered at once; a dropped one never is;
// a delayed one is delivered when the caller calls Deliver. A packet
// travelling in a dark direction of a blackholed connection is dropped
// without asking the rules (Action Blackhole, the darkening rule's index,
// no Dark).
func (p *Pipeline) Handle(seg *statetrack.Segment, now time.Time) rules.Verdict {
	o := p.tracker.Observe(seg, now)
	var d rules.Decision
	// No connection is dark on most runs: no map lookup then.
	if len(p.dark) == 0 || !p.darkened(&o, now, &d) {
		d = p.engine.Decide(&o)
	}
	v := rules.Verdict{Decision: d, Obs: o}
	states := o.After
	if d.Action.DeliversNow() {
		states, _ = p.tracker.Deliver(&o, now)
	}
	if d.Dark != 0 {
		p.darken(&o, &d, now, states)
	} else {
		p.track(o.ConnID, states)
	}
	v.Quiet = p.quietable && !d.Action.Faulty() && o.ConnID != 0 && p.quietAfter(&o, states)
	p.stats.Packets[o.Kind]++
	p.stats.Actions[d.Action]++
	p.stats.KindActions[o.Kind][d.Action]++
	if p.sink != nil {
		e := packetEvent(&o, now, states)
		if d.Rule >= 0 {
			e.Rule, e.Action = d.RuleName, d.Action
			if d.Action.Holds() {
				e.Delay = d.Hold
			}
			if d.Action.SendsCopies() {
				e.Copies, e.After = d.Copies, d.After
			}
			e.Dark = d.Dark
		}
		p.sink.Emit(e)
	}
	if d.Action.SendsResets() {
		p.reset(&v, now)
	}
	if v.Quiet { // last: a handler that panics before proposes nothing
		v.Closing = p.tracker.Quieting(o.ConnID)
	}
	return v
}

// quietAfter reports whether the connection of the packet seen in o may
// go quiet after its accepted verdict, which left the endpoints in states:
// both ESTABLISHED (the data phase), once past the first packets a rule
// may act on (rules.Set.QuietAfter); the client ESTABLISHED and the server
// SYN_RCVD after the server's SYN-ACK, the client's SYN not retransmitted
// (a quiet handshake, statetrack.Tracker.QuietHandshake); the sender
// FIN_WAIT_1 and the receiver CLOSE_WAIT after a first FIN that found both
// ESTABLISHED (a quiet close), and any packet without SYN, FIN or RST
// observed in a quiet close until its next FIN (statetrack.Tracker.
// QuietClosing).
func (p *Pipeline) quietAfter(o *statetrack.Observation, states [2]statetrack.State) bool {
	const est = statetrack.Established
	switch {
	case states == [2]statetrack.State{est, est}:
		return !p.dataBounded || p.tracker.SentPast(o.ConnID, &p.dataAfter)
	case o.Kind == statetrack.SynAck:
		return p.phases.Handshake && o.From == statetrack.Server && states == [2]statetrack.State{est, statetrack.SynRcvd} &&
			p.tracker.QuietHandshake(o.ConnID)
	case o.Kind == statetrack.Fin:
		return p.phases.Close && !o.Retransmission && o.Before == [2]statetrack.State{est, est} &&
			states[o.From] == statetrack.FinWait1 && states[o.From.Other()] == statetrack.CloseWait
	case o.Seg.Flags&(statetrack.SYN|statetrack.FIN|statetrack.RST) == 0:
		// Queued behind a quiet close's first FIN (its ACK, say): a
		// verdict without the quiet bit would wake the close in the
		// kernel (nfq's filter chain clears it after a first FIN).
		return p.phases.Close && p.tracker.QuietClosing(o.ConnID)
	}
	return false
}

// reset injects the RSTs of reset verdict v at now (see inject).
func (p *Pipeline) reset(v *rules.Verdict, now time.Time) {
	rs := v.Resets()
	for i := range rs.N {
		r, exact := &rs.Seg[i], rs.Exact[i]
		p.inject(r, exact, now)
		if r.Dst == v.Obs.Seg.Src && exact {
			// The packet's sender is reset: it never sends the packet again.
			p.tracker.Retract(&v.Obs)
		}
	}
}

// inject observes an RST that the verdict sends (the driver sends it) and
// delivers it at once, so that its receiver's tracked state moves as a
// real RST's would; the endpoint it impersonates does not move (see
// statetrack.Tracker.Forge). Its event says injected.
func (p *Pipeline) inject(seg *statetrack.Segment, exact bool, now time.Time) {
	o, states := p.tracker.Forge(seg, now, exact)
	p.track(o.ConnID, states)
	p.stats.Injected++
	if p.sink != nil {
		e := packetEvent(&o, now, states)
		e.Injected = true
		p.sink.Emit(e)
	}
}

// Deliver reports that a held packet was released, or that one copy of a
// duplicated packet was sent, at now. The receiver's state moves; a change
// is reported as a "state" event.
func (p *Pipeline) Deliver(v *rules.Verdict, now time.Time) {
	states, changed := p.tracker.Deliver(&v.Obs, now)
	if changed {
		p.track(v.Obs.ConnID, states)
	}
	if !changed || p.sink == nil {
		return
	}
	e := packetEvent(&v.Obs, now, states)
	e.Kind, e.Reason = 0, events.Released
	if v.Action.SendsCopies() {
		e.Reason = events.Duplicate
	}
	p.sink.Emit(e)
}

// Quieted reports that the connection connID went quiet at now: a verdict
// that lets its data phase (or its third ACK, or what follows its first
// FIN) bypass the queue reached the kernel (the live path may decline a
// rules.Verdict.Quiet, e.g. while more of its packets wait). After a
// SYN-ACK the tracker takes the third ACK as delivered
// (statetrack.Tracker.Quiet): the server's move to ESTABLISHED is
// reported as a state event with reason quiet-handshake.
func (p *Pipeline) Quieted(connID uint64, now time.Time) {
	info, moved, _ := p.tracker.QuietInfo(connID, now)
	if !moved {
		return
	}
	p.track(connID, info.States)
	if p.sink != nil {
		p.sink.Emit(stateEvent(now, info.Client, info.Server, connID, info.States, events.QuietHandshake))
	}
}

// Declined reports that the live path declined a Verdict.Quiet of the
// connection connID: its verdict reaches the kernel without the quiet bit
// (statetrack.Tracker.QuietDeclined).
func (p *Pipeline) Declined(connID uint64) { p.tracker.QuietDeclined(connID) }

// Expire heals the blackholes whose time ran out by now, and reaps
// connections whose TIME_WAIT or idle time ran out.
func (p *Pipeline) Expire(now time.Time) {
	p.healDue(now)
	p.tracker.Expire(now)
}

// gone forgets a connection that left the tracker, dark or not, reports
// it as an event, then to the tracker config's own OnGone.
func (p *Pipeline) gone(g statetrack.Gone) {
	delete(p.dark, g.ConnID)
	if p.sink != nil {
		p.sink.Emit(stateEvent(g.At, g.Client, g.Server, g.ConnID, g.After, events.Gone(g.Reason)))
	}
	if p.onGone != nil {
		p.onGone(g)
	}
}

// stateEvent is the state event of connection id (client to server) at
// at, for reason, with no packet: the endpoints are in states.
func stateEvent(at time.Time, client, server netip.AddrPort, id uint64, states [2]statetrack.State, reason events.Reason) events.Event {
	return events.Event{
		Time: at, Client: client, Server: server, ConnID: id,
		ClientState: states[statetrack.Client], ServerState: states[statetrack.Server],
		Reason: reason,
	}
}

func packetEvent(o *statetrack.Observation, now time.Time, states [2]statetrack.State) events.Event {
	return events.Event{
		Time:           now,
		Client:         o.Client,
		Server:         o.Server,
		ConnID:         o.ConnID,
		From:           o.From,
		Kind:           o.Kind,
		Closer:         o.Closer,
		Nth:            o.Nth,
		Retransmission: o.Retransmission,
		Seq:            uint32(o.Seg.Seq),
		Ack:            uint32(o.Seg.Ack),
		Flags:          o.Seg.Flags,
		Len:            o.Seg.Len,
		ClientState:    states[statetrack.Client],
		ServerState:    states[statetrack.Server],
		Midstream:      o.Midstream,
		NewIncarnation: o.NewIncarnation,
	}
}

// Summary is what a run or a replay reports at its end.
type Summary struct {
	Tracker statetrack.Stats
	// Tracked is how many connections the table holds at the end.
	Tracked int
	Stats   Stats
	Rules   []RuleHits
}

// RuleHits is how many packets one rule acted on.
type RuleHits struct {
	Name   string
	Action rules.ActionType // what the rule does
	Hits   uint64
}

// Summary returns the pipeline's counters with the tracker's and the rules'.
func (p *Pipeline) Summary() Summary {
	s := Summary{Tracker: p.tracker.Stats(), Tracked: p.tracker.Len(), Stats: p.stats}
	for i, n := range p.engine.Hits() {
		s.Rules = append(s.Rules, RuleHits{Name: p.names[i], Action: p.set.Action(i), Hits: n})
	}
	return s
}

// Add folds o into s: counters add up, and so do rule hits, by rule
// (name and action; a rule of o that s lacks is appended): summaries of
// several queues' pipelines taken one queue at a time may straddle a
// reload that changed the rules.
func (s *Summary) Add(o Summary) {
	s.Tracker.Add(o.Tracker)
	s.Tracked += o.Tracked
	s.Stats.Add(o.Stats)
	for i, r := range o.Rules {
		j := i // the same rule set: the same position
		if j >= len(s.Rules) || s.Rules[j].Name != r.Name || s.Rules[j].Action != r.Action {
			j = slices.IndexFunc(s.Rules, func(h RuleHits) bool { return h.Name == r.Name && h.Action == r.Action })
		}
		if j < 0 {
			s.Rules = append(s.Rules, r)
			continue
		}
		s.Rules[j].Hits += r.Hits
	}
}

// CountStates adds to n the tracked connections among up to max slots of
// the connection table from slot from on (see statetrack.Tracker.CountStates):
// it returns the slot to go on from and whether any is left.
func (p *Pipeline) CountStates(from, max int, n *statetrack.StatePairs) (next int, more bool) {
	return p.tracker.CountStates(from, max, n)
}
