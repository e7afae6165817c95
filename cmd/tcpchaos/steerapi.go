//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/tcpchaos/tcpchaos/ctlclient"
	"github.com/tcpchaos/tcpchaos/internal/control"
	"github.com/tcpchaos/tcpchaos/internal/ladder"
	"github.com/tcpchaos/tcpchaos/internal/metrics"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// The control requests, answered from the control server's goroutines
// (control.Backend).

// Reload hands a control request's reload to the run's goroutine.
func (s *steering) Reload(file string) (ctlclient.Reload, error) {
	reply := make(chan reloadResult, 1)
	select {
	case s.reloads <- reloadRequest{file: file, reply: reply}:
	case <-s.stopped:
		return ctlclient.Reload{}, errors.New("the run is stopping")
	}
	r := <-reply
	return r.res, r.err
}

// Status reports the run's status, counters summed over its queues.
func (s *steering) Status() ctlclient.Status {
	var total pipeline.Summary
	for i, q := range s.queues {
		q.Do(func() { total.Add(s.pipes[i].Summary()) })
	}
	s.mu.Lock()
	st := ctlclient.Status{
		PID: os.Getpid(), Started: s.started, Uptime: time.Since(s.started).Seconds(),
		Config: s.file, Loaded: s.loaded, Reloads: s.reloaded, Refused: s.refused,
		LastError: s.lastErr, Rules: s.set.Len(), Quiet: s.quiet, QuietHandshake: s.phases.Handshake, QuietClose: s.phases.Close, Tracked: total.Tracked,
		Packets: map[string]uint64{}, Actions: map[string]uint64{},
	}
	if s.lastErr != "" {
		at := s.lastErrAt
		st.LastErrorAt = &at
	}
	first := s.cfg.Intercept.Queue
	s.mu.Unlock()
	for _, k := range statetrack.Kinds() {
		st.Packets[k.String()] = total.Stats.Packets[k]
	}
	for a, n := range total.Stats.Actions {
		if n > 0 {
			st.Actions[rules.ActionType(a).String()] = n
		}
	}
	for i, q := range s.queues {
		qs := q.Stats()
		cq := ctlclient.Queue{
			Number: first + uint16(i), Received: qs.Received, Accepted: qs.Accepted, Dropped: qs.Dropped,
			Delayed: qs.Delayed, Held: uint64(max(qs.Held, 0)), Duplicated: qs.Duplicated,
			KernelQueued: qs.Queued(), KernelUnseen: qs.Unreceived(),
		}
		if qs.KernelErr != nil {
			cq.KernelError = qs.KernelErr.Error()
		}
		st.Queues = append(st.Queues, cq)
	}
	if qf, err := s.full.Read(); err != nil {
		st.QueueFullError = err.Error()
	} else {
		st.RulePackets, st.QueueFullUnseen = qf.RulePackets, qf.Unseen
	}
	return st
}

// Conns lists the tracked connections f selects, the most recently active
// first.
func (s *steering) Conns(f ctlclient.ConnFilter) ([]ctlclient.Conn, error) {
	var state statetrack.State
	if f.State != "" {
		var err error
		if state, err = statetrack.ParseState(f.State); err != nil {
			return nil, fmt.Errorf("state: %w: %w", err, control.ErrBadRequest)
		}
	}
	now := time.Now()
	var cs []ctlclient.Conn
	for _, ci := range s.tracked(f.Limit, func(ci statetrack.ConnInfo) bool {
		return (f.State == "" || ci.States[0] == state || ci.States[1] == state) &&
			(f.Port == 0 || ci.Server.Port() == f.Port)
	}) {
		cs = append(cs, s.conn(ci, now))
	}
	if cs == nil {
		cs = []ctlclient.Conn{}
	}
	return cs, nil
}

// connSlots is how many slots of a connection table tracked reads while
// the queue's packets wait (as the metrics' state counts do): a table of a
// million connections never holds a queue up for the whole walk.
const connSlots = 1 << 12

// tracked returns the tracked connections that keep selects, the most
// recently active first and quiet ones last, at most limit of them (0: all).
// Each queue's table is read connSlots slots at a time, the queue's packets
// handled in between.
func (s *steering) tracked(limit int, keep func(statetrack.ConnInfo) bool) []statetrack.ConnInfo {
	l := connList{limit: limit}
	add := func(ci statetrack.ConnInfo) {
		if keep(ci) {
			l.add(ci)
		}
	}
	for i, q := range s.queues {
		for from, more := 0, true; more; {
			q.Do(func() { from, more = s.pipes[i].EachSlot(from, connSlots, add) })
		}
	}
	return l.sorted()
}

// connList collects connections and keeps the limit most recently active
// (all when limit is 0), holding no more than twice limit at any time.
type connList struct {
	limit int
	cis   []statetrack.ConnInfo
}

func (l *connList) add(ci statetrack.ConnInfo) {
	l.cis = append(l.cis, ci)
	if l.limit > 0 && len(l.cis) >= 2*l.limit {
		l.trim()
	}
}

// sorted returns the connections kept, the most recently active first.
func (l *connList) sorted() []statetrack.ConnInfo {
	l.trim()
	return l.cis
}

// trim sorts the connections, the most recently active first and quiet
// ones (whose activity the tracker does not see) last, and drops those
// beyond the limit.
func (l *connList) trim() {
	slices.SortStableFunc(l.cis, func(a, b statetrack.ConnInfo) int {
		if a.Quiet != b.Quiet {
			if a.Quiet {
				return 1
			}
			return -1
		}
		return b.Last.Compare(a.Last)
	})
	if l.limit > 0 && len(l.cis) > l.limit {
		l.cis = l.cis[:l.limit]
	}
}

// conn describes a tracked connection with what its trail counted.
func (s *steering) conn(ci statetrack.ConnInfo, now time.Time) ctlclient.Conn {
	c := ctlclient.Conn{
		ID: ci.ConnID, Client: ci.Client.String(), Server: ci.Server.String(),
		ClientState: ci.States[statetrack.Client].String(), ServerState: ci.States[statetrack.Server].String(),
		Last: ci.Last, Midstream: ci.Midstream, Quiet: ci.Quiet, Packets: map[string]uint64{},
	}
	if sum, ok := s.trail.Summary(ci.ConnID); ok {
		c.First, c.Age, c.Faults = sum.First, now.Sub(sum.First).Seconds(), sum.Faults
		for _, k := range statetrack.Kinds() {
			if n := sum.Packets[k]; n > 0 {
				c.Packets[k.String()] = n
			}
		}
	}
	return c
}

// reloadCounts counts the reloads by result, for the metrics.
func (s *steering) reloadCounts() metrics.Reloads {
	s.mu.Lock()
	defer s.mu.Unlock()
	return metrics.Reloads{OK: s.reloaded, Refused: s.refused}
}

// Rules lists the rules in force.
func (s *steering) Rules() []ctlclient.Rule {
	s.mu.Lock()
	set, cfg := s.set, s.cfg.Rules
	s.mu.Unlock()
	hits, on := set.Hits(), set.Enabled()
	rs := make([]ctlclient.Rule, len(cfg))
	for i, r := range cfg {
		rs[i] = ctlclient.Rule{
			Name: r.Name, Match: describeMatch(r.Match), Action: r.Action.String(), Probability: r.Probability,
			Hits: hits[i], Limit: r.Limit, Enabled: on[i],
		}
		if r.Limit > 0 {
			left := r.Limit - min(hits[i], r.Limit)
			rs[i].LimitLeft = &left
		}
	}
	return rs
}

// SetRuleEnabled enables or disables a rule by name, from the next packet
// on.
func (s *steering) SetRuleEnabled(name string, on bool) (ctlclient.Rule, error) {
	s.mu.Lock()
	ok := s.set.SetEnabled(name, on)
	s.mu.Unlock()
	if !ok {
		return ctlclient.Rule{}, fmt.Errorf("no rule named %q in force: %w", name, control.ErrNotFound)
	}
	verb := "disabled"
	if on {
		verb = "enabled"
	}
	fmt.Fprintf(s.status, "tcpchaos: rule %s %s through the control socket\n", name, verb)
	for _, r := range s.Rules() {
		if r.Name == name {
			return r, nil
		}
	}
	return ctlclient.Rule{}, fmt.Errorf("rule %q went away in a reload: %w", name, control.ErrNotFound)
}

// Timeline returns the kept events of a tracked connection, by conn id
// or by its client's ADDR:PORT (the most recently active incarnation).
func (s *steering) Timeline(conn string) (ctlclient.Timeline, error) {
	var keep func(statetrack.ConnInfo) bool
	if id, err := strconv.ParseUint(conn, 10, 64); err == nil {
		keep = func(ci statetrack.ConnInfo) bool { return ci.ConnID == id }
	} else if ap, err := netip.ParseAddrPort(conn); err == nil {
		keep = func(ci statetrack.ConnInfo) bool { return ci.Client == ap }
	} else {
		return ctlclient.Timeline{}, fmt.Errorf("connection %q: want a conn id or the client's ADDR:PORT (IPv6 bracketed): %w", conn, control.ErrBadRequest)
	}
	cis := s.tracked(1, keep)
	if len(cis) == 0 {
		return ctlclient.Timeline{}, fmt.Errorf("no tracked connection %s: %w", conn, control.ErrNotFound)
	}
	ci := cis[0]
	evs, _ := s.trail.Events(ci.ConnID)
	var b bytes.Buffer
	ladder.Write(&b, evs, ladder.Options{ASCII: true})
	t := ctlclient.Timeline{Conn: s.conn(ci, time.Now()), Ladder: b.String(), Events: make([]json.RawMessage, len(evs))}
	for i := range evs {
		t.Events[i], _ = evs[i].MarshalJSON() // never fails
	}
	return t, nil
}
