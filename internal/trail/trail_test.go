package trail

import (
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func packet(id uint64, k statetrack.Kind, nth uint32) events.Event {
	return events.Event{Time: t0.Add(time.Duration(nth) * time.Millisecond), ConnID: id, Kind: k, Nth: nth}
}

func TestRingKeepsTheLastEventsAndCountsAll(t *testing.T) {
	r := New(3, 10)
	for n := uint32(1); n <= 5; n++ {
		r.Emit(packet(7, statetrack.Data, n))
	}
	drop := packet(7, statetrack.Fin, 1)
	drop.Rule, drop.Action = "lose-fin", rules.Drop
	r.Emit(drop)
	evs, ok := r.Events(7)
	if !ok || len(evs) != 3 {
		t.Fatalf("Events(7) = %d events, %v; want the last 3", len(evs), ok)
	}
	if evs[0].Nth != 4 || evs[1].Nth != 5 || evs[2].Kind != statetrack.Fin {
		t.Errorf("ring holds %+v, want data #4, data #5, fin (oldest first)", evs)
	}
	s, _ := r.Summary(7)
	if s.Packets[statetrack.Data] != 5 || s.Packets[statetrack.Fin] != 1 || s.Faults != 1 || s.Events != 6 {
		t.Errorf("summary %+v, want 5 data, 1 fin, 1 fault, 6 events", s)
	}
	if !s.First.Equal(t0.Add(time.Millisecond)) {
		t.Errorf("first %v, want the first event's time", s.First)
	}
}

func TestGoneDropsTheTrailAndConnectionsAreBounded(t *testing.T) {
	r := New(3, 2)
	r.Emit(packet(1, statetrack.Syn, 1))
	r.Emit(packet(2, statetrack.Syn, 1))
	r.Emit(events.Event{ConnID: 1, Reason: events.Gone(statetrack.TimeWaitExpired)})
	if _, ok := r.Events(1); ok || r.Len() != 1 {
		t.Fatalf("after its gone event connection 1 is still kept (%d kept)", r.Len())
	}
	r.Emit(packet(3, statetrack.Syn, 1))
	r.Emit(packet(4, statetrack.Syn, 1)) // evicts 2, the oldest
	if _, ok := r.Events(2); ok || r.Len() != 2 || r.Evicted() != 1 {
		t.Errorf("kept %d, evicted %d, connection 2 kept %v; want 2 kept, 1 evicted, not 2", r.Len(), r.Evicted(), ok)
	}
	r.Emit(events.Event{Reason: events.Released}) // no connection: ignored
	if r.Len() != 2 {
		t.Errorf("an event without a connection was kept")
	}
}
