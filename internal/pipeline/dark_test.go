package pipeline

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// A blackhole of both directions drops the matching packet and every
// later one without the rules (no hit), an RST too, which still moves its
// sender: the tracker learns of the end while the receiver never does.
func TestBlackholeDropsTheRestAndTracksTheRST(t *testing.T) {
	p, rec := resetPipeline(t, rule(statetrack.Data, rules.Action{Type: rules.Blackhole, Blackhole: rules.Both}))
	if v := p.Handle(dataSeg(true, 10), t0); v.Action != rules.Blackhole || v.Dark != rules.Both {
		t.Fatalf("matching packet: %s dark %s, want blackhole both", v.Action, v.Dark.Direction())
	}
	if e := rec.last(); !e.Fired() || e.Dark != rules.Both {
		t.Errorf("matching packet's event %+v: want it fired, blackhole both", e)
	}
	for _, s := range []*statetrack.Segment{dataSeg(false, 5), dataSeg(true, 10), seg(false, statetrack.RST, 506, 0)} {
		if v := p.Handle(s, t0.Add(time.Second)); v.Action != rules.Blackhole || v.Dark != 0 || v.Rule != 0 || v.RuleName != "r" {
			t.Errorf("packet of the dark connection: %+v, want blackhole by rule 0, no Dark", v.Decision)
		}
		if e := rec.last(); e.Fired() || e.Rule != "r" || e.Action != rules.Blackhole {
			t.Errorf("its event %+v: want rule r, action blackhole, not a firing", e)
		}
	}
	if e := rec.last(); e.ServerState != statetrack.Closed || e.ClientState != statetrack.Established {
		t.Errorf("after the server's RST: client %s, server %s; want ESTABLISHED, CLOSED", e.ClientState, e.ServerState)
	}
	s := p.Summary()
	if s.Rules[0].Hits != 1 || s.Stats.Actions[rules.Blackhole] != 4 {
		t.Errorf("hits %d, blackhole decisions %d; want 1 and 4", s.Rules[0].Hits, s.Stats.Actions[rules.Blackhole])
	}
}

// A blackhole with a duration heals on Expire, at its own time, with a
// healed state event; the connection's packets then pass and meet the
// rules again. One the tracker forgets is forgotten too.
func TestBlackholeHealsOnExpire(t *testing.T) {
	r := rule(statetrack.Data, rules.Action{Type: rules.Blackhole, Blackhole: rules.ToClient, For: 2 * time.Second})
	r.Limit = 1
	p, rec := resetPipeline(t, r)
	if v := p.Handle(dataSeg(true, 10), t0); v.Action != rules.Accept || v.Dark != rules.ToClient {
		t.Fatalf("matching packet from the client: %s dark %s, want accept to-client", v.Action, v.Dark.Direction())
	}
	p.Expire(t0.Add(1999 * time.Millisecond))
	if v := p.Handle(dataSeg(false, 5), t0.Add(1999*time.Millisecond)); v.Action != rules.Blackhole {
		t.Errorf("the server's packet before the heal: %s, want blackhole", v.Action)
	}
	p.Expire(t0.Add(3 * time.Second))
	h := rec.last()
	if h.Reason != events.Healed || !h.Time.Equal(t0.Add(2*time.Second)) || h.Rule != "r" || h.Dark != rules.ToClient || h.HasPacket() {
		t.Errorf("event after Expire %+v: want healed at t0+2s by r, to-client, no packet", h)
	}
	if v := p.Handle(dataSeg(false, 5), t0.Add(3*time.Second)); v.Action != rules.Accept || v.Rule != -1 {
		t.Errorf("the server's packet after the heal: %+v, want accepted, no rule (its limit is used)", v.Decision)
	}
	if p.Summary().Stats.Healed != 1 || len(p.dark) != 0 {
		t.Errorf("healed %d, %d dark left; want 1 and none", p.Summary().Stats.Healed, len(p.dark))
	}

	p, _ = resetPipeline(t, rule(statetrack.Data, rules.Action{Type: rules.Blackhole, Blackhole: rules.Both, For: time.Hour}))
	p.Handle(dataSeg(true, 10), t0)
	p.Expire(t0.Add(11 * time.Minute)) // the default idle timeout
	if len(p.dark) != 0 {
		t.Errorf("%d dark connections left after the tracker forgot the connection", len(p.dark))
	}
}

// A reload keeps a dark connection dark (its rule gone or renumbered)
// until it heals, under the name of the rule that darkened it.
func TestBlackholeOutlivesAReload(t *testing.T) {
	p, rec := resetPipeline(t, rule(statetrack.Data, rules.Action{Type: rules.Blackhole, Blackhole: rules.Both, For: time.Second}))
	p.Handle(dataSeg(true, 10), t0)
	p.Switch(rules.Compile([]rules.Rule{{Name: "other", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Syn}}, Action: rules.Action{Type: rules.Drop}, Probability: 1}}))
	if v := p.Handle(dataSeg(false, 5), t0.Add(500*time.Millisecond)); v.Action != rules.Blackhole || v.RuleName != "r" {
		t.Errorf("after the reload: %+v, want still dark, by r", v.Decision)
	}
	p.Expire(t0.Add(time.Second))
	if h := rec.last(); h.Reason != events.Healed || h.Rule != "r" {
		t.Errorf("heal after the reload: %+v, want healed by r", h)
	}
}

// The healed event carries the connection's states as last delivered: a
// packet that passes in the direction that is not dark moves its
// receiver, and the heal must not take that back (an expectation on the
// states, like never, would see the receiver leave its state at the
// heal).
func TestBlackholeHealedStatesAsDelivered(t *testing.T) {
	p, rec := resetPipeline(t, rule(statetrack.Data, rules.Action{Type: rules.Blackhole, Blackhole: rules.ToClient, For: 2 * time.Second}))
	p.Handle(dataSeg(true, 10), t0)
	if v := p.Handle(seg(true, statetrack.FIN|ack, 111, 501), t0.Add(time.Second)); v.Action != rules.Accept {
		t.Fatalf("the client's FIN: %s, want accept (to-server is not dark)", v.Action)
	}
	fin := rec.last()
	p.Expire(t0.Add(3 * time.Second))
	h := rec.last()
	if h.Reason != events.Healed || h.ClientState != fin.ClientState || h.ServerState != fin.ServerState {
		t.Errorf("healed event %+v: want the states after the FIN (client %s, server %s)", h, fin.ClientState, fin.ServerState)
	}
}

// TestHealQueue: blackholes heal at their connection's last darkening's
// time, earliest first, whether that darkening moved the heal later or
// earlier, and never after one for ever; healDue takes from the queue
// only what is due, and nothing is left in it once every heal is past.
func TestHealQueue(t *testing.T) {
	p, rec := newPipeline(t, rule(statetrack.Data, rules.Action{Type: rules.Accept}))
	darken := func(id uint64, at, d time.Duration) {
		p.darken(&statetrack.Observation{ConnID: id}, &rules.Decision{Action: rules.Blackhole, Dark: rules.Both, For: d, RuleName: "r"}, t0.Add(at), [2]statetrack.State{})
	}
	darken(1, 0, 3*time.Second)
	darken(2, 0, time.Second)
	darken(2, 500*time.Millisecond, 2*time.Second) // later: 2.5 s
	darken(3, 0, 10*time.Second)
	darken(3, time.Second, time.Second) // earlier: 2 s
	darken(4, 0, time.Second)
	darken(4, 500*time.Millisecond, 0) // for ever
	healed := func() (got []string) {
		for _, e := range *rec {
			if e.Reason == events.Healed {
				got = append(got, fmt.Sprintf("%d@%v", e.ConnID, e.Time.Sub(t0)))
			}
		}
		*rec = (*rec)[:0]
		return got
	}
	p.healDue(t0.Add(1999 * time.Millisecond))
	if got := healed(); len(got) != 0 {
		t.Errorf("healed before 2 s: %v", got)
	}
	p.healDue(t0.Add(2500 * time.Millisecond))
	if got, want := healed(), []string{"3@2s", "2@2.5s"}; !slices.Equal(got, want) {
		t.Errorf("healed by 2.5 s: %v, want %v", got, want)
	}
	p.healDue(t0.Add(time.Minute))
	if got, want := healed(), []string{"1@3s"}; !slices.Equal(got, want) {
		t.Errorf("healed by a minute: %v, want %v", got, want)
	}
	if _, dark := p.dark[4]; !dark || len(p.dark) != 1 || len(p.heals) != 0 {
		t.Errorf("after every heal: dark %v, %d heals queued; want connection 4 only, none queued", p.dark, len(p.heals))
	}
}

// BenchmarkHealDue: the heal check a queue makes at every kernel heal and
// every second, with 65,536 connections dark (nfq's most heals) and
// nothing due: it looks at the queue's head only.
func BenchmarkHealDue(b *testing.B) {
	p, _ := newPipeline(b, rule(statetrack.Data, rules.Action{Type: rules.Accept}))
	for id := range uint64(1 << 16) {
		p.darken(&statetrack.Observation{ConnID: id + 1}, &rules.Decision{Action: rules.Blackhole, Dark: rules.Both, For: time.Hour}, t0.Add(time.Duration(id)), [2]statetrack.State{})
	}
	b.ReportAllocs()
	for b.Loop() {
		p.healDue(t0.Add(time.Minute))
	}
}
