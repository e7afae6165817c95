package execute

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// recorder is an Output that records what it is asked, one line each:
// "accept 1 @0", "release 2 @300", "copy 3 @500 [bytes]", "deliver 3 @500".
type recorder struct {
	log     []string
	copyErr error
}

func (r *recorder) add(what string, p *Packet, now time.Time) {
	r.log = append(r.log, fmt.Sprintf("%s %d @%d", what, p.ID, now.Sub(t0).Milliseconds()))
}

func (r *recorder) Accept(p *Packet, _ *rules.Verdict, now time.Time) { r.add("accept", p, now) }
func (r *recorder) Drop(p *Packet, _ *rules.Verdict, now time.Time)   { r.add("drop", p, now) }
func (r *recorder) Release(p *Packet, _ *rules.Verdict, now time.Time) {
	r.add(fmt.Sprintf("release %q", p.Data), p, now)
}
func (r *recorder) SendCopy(p *Packet, _ *rules.Verdict, now time.Time) error {
	if r.copyErr != nil {
		return r.copyErr
	}
	r.add(fmt.Sprintf("copy %q", p.Data), p, now)
	return nil
}
func (r *recorder) Delivered(v *rules.Verdict, now time.Time) {
	r.log = append(r.log, fmt.Sprintf("deliver nth %d @%d", v.Obs.Nth, now.Sub(t0).Milliseconds()))
}

func verdict(a rules.ActionType, ms int, copies uint32, nth uint32) *rules.Verdict {
	d := rules.Decision{Action: a}
	switch {
	case a.Holds():
		d.Hold = time.Duration(ms) * time.Millisecond
	case a.SendsCopies():
		d.Copies, d.After = copies, time.Duration(ms)*time.Millisecond
	}
	return &rules.Verdict{Decision: d, Obs: statetrack.Observation{Nth: nth}}
}

func carry(x *Executor, id uint32, data string, v *rules.Verdict, ms int) bool {
	buf := []byte(data)
	p := &Packet{ID: id, Data: buf, Len: len(buf)}
	earlier := x.Carry(p, v, at(ms))
	for i := range buf { // the driver reuses its buffer
		buf[i] = '!'
	}
	return earlier
}

func check(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	if !slices.Equal(r.log, want) {
		t.Errorf("outputs\n%q\nwant\n%q", r.log, want)
	}
	r.log = nil
}

func TestCarryNowAndLater(t *testing.T) {
	r := &recorder{}
	x := New(r, Options{})
	carry(x, 1, "a", verdict(rules.Accept, 0, 0, 1), 0)
	carry(x, 2, "b", verdict(rules.Drop, 0, 0, 2), 0)
	if !carry(x, 3, "c", verdict(rules.Delay, 300, 0, 3), 0) {
		t.Error("the first hold did not move the earliest deadline")
	}
	if carry(x, 4, "d", verdict(rules.Duplicate, 500, 2, 4), 0) {
		t.Error("copies due after the hold moved the earliest deadline")
	}
	check(t, r, "accept 1 @0", "drop 2 @0", "accept 4 @0")
	if next, ok := x.Next(); !ok || !next.Equal(at(300)) || x.Holding() != 1 {
		t.Fatalf("next %v %v holding %d, want 300ms and one held packet", next, ok, x.Holding())
	}
	x.Fire(at(299))
	check(t, r)
	x.Fire(at(600)) // released at the time Fire is told, held bytes not kept
	check(t, r, `release "" 3 @600`, "deliver nth 3 @600",
		`copy "d" 4 @600`, "deliver nth 4 @600", `copy "d" 4 @600`, "deliver nth 4 @600")
	s := x.Stats()
	if s.Delayed != 1 || s.Duplicated != 1 || s.CopiesSent != 2 || s.Held != 0 || x.Holding() != 0 {
		t.Errorf("stats %+v holding %d", s, x.Holding())
	}
}

func TestAdvanceCarriesOutAtEachDeadline(t *testing.T) {
	r := &recorder{}
	x := New(r, Options{KeepHeld: true})
	carry(x, 1, "a", verdict(rules.Delay, 500, 0, 1), 0)
	carry(x, 2, "b", verdict(rules.Delay, 100, 0, 2), 0)
	carry(x, 3, "c", verdict(rules.Duplicate, 100, 1, 3), 0)
	x.Advance(at(400))
	check(t, r, "accept 3 @0", `release "b" 2 @100`, "deliver nth 2 @100", `copy "c" 3 @100`, "deliver nth 3 @100")
	x.Finish()
	check(t, r, `release "a" 1 @500`, "deliver nth 1 @500")
}

func TestCopiesOfPartialPacketSkipped(t *testing.T) {
	r := &recorder{}
	x := New(r, Options{})
	p := &Packet{ID: 1, Data: []byte("head"), Len: 1500}
	if x.Carry(p, verdict(rules.Duplicate, 10, 3, 1), at(0)) {
		t.Error("skipped copies scheduled")
	}
	x.Finish()
	check(t, r, "accept 1 @0")
	if s := x.Stats(); s.CopiesSkipped != 3 || s.Duplicated != 1 || s.CopiesSent != 0 {
		t.Errorf("stats %+v, want 3 copies skipped", s)
	}
}

func TestFailedCopyNotDelivered(t *testing.T) {
	r := &recorder{copyErr: errors.New("no route")}
	x := New(r, Options{})
	carry(x, 1, "a", verdict(rules.Duplicate, 10, 2, 1), 0)
	x.Fire(at(10))
	check(t, r, "accept 1 @0")
	if s := x.Stats(); s.CopiesFailed != 2 || s.CopiesSent != 0 {
		t.Errorf("stats %+v, want 2 copies failed", s)
	}
}

func TestStopReleasesHeldCancelsCopies(t *testing.T) {
	r := &recorder{}
	x := New(r, Options{})
	carry(x, 1, "a", verdict(rules.Delay, 1000, 0, 1), 0)
	carry(x, 2, "b", verdict(rules.Duplicate, 10, 4, 2), 0)
	x.Stop(at(5))
	check(t, r, "accept 2 @0", `release "" 1 @5`, "deliver nth 1 @5")
	if !x.Stopped() {
		t.Error("not stopped")
	}
	if _, ok := x.Next(); ok {
		t.Error("entries left after Stop")
	}
	if s := x.Stats(); s.CopiesCancelled != 4 || s.Held != 0 {
		t.Errorf("stats %+v, want 4 copies cancelled, none held", s)
	}
}

func TestEqualDeadlinesKeepArrivalOrder(t *testing.T) {
	r := &recorder{}
	x := New(r, Options{})
	for id := uint32(1); id <= 5; id++ {
		carry(x, id, "", verdict(rules.Delay, 100, 0, id), 0)
	}
	x.Fire(at(100))
	var ids []string
	for _, l := range r.log {
		if l[0] == 'r' {
			ids = append(ids, l)
		}
	}
	want := []string{`release "" 1 @100`, `release "" 2 @100`, `release "" 3 @100`, `release "" 4 @100`, `release "" 5 @100`}
	if !slices.Equal(ids, want) {
		t.Errorf("release order %q, want %q", ids, want)
	}
}

// tapLog is a Tap that logs into a recorder: "arrived 1 @0 [bytes]",
// "sent copy 2 of 3 @500".
type tapLog struct{ r *recorder }

func (l tapLog) Arrived(p *Packet, v *rules.Verdict, now time.Time) {
	l.r.add(fmt.Sprintf("arrived %s %q", v.Action, p.Data), p, now)
}
func (l tapLog) CopySent(p *Packet, v *rules.Verdict, i int, now time.Time) {
	l.r.add(fmt.Sprintf("sent copy %d of %d", i, v.Copies), p, now)
}

func TestTapSeesArrivalsAndCopiesSent(t *testing.T) {
	r := &recorder{}
	x := New(r, Options{Tap: tapLog{r}})
	carry(x, 1, "a", verdict(rules.Drop, 0, 0, 1), 0)
	carry(x, 2, "b", verdict(rules.Delay, 300, 0, 2), 0)
	carry(x, 3, "c", verdict(rules.Duplicate, 100, 2, 3), 0)
	x.Advance(at(300))
	check(t, r, `arrived drop "a" 1 @0`, "drop 1 @0", `arrived delay "b" 2 @0`, `arrived duplicate "c" 3 @0`, "accept 3 @0",
		`copy "c" 3 @100`, "sent copy 1 of 2 3 @100", "deliver nth 3 @100",
		`copy "c" 3 @100`, "sent copy 2 of 2 3 @100", "deliver nth 3 @100",
		`release "" 2 @300`, "deliver nth 2 @300")

	r.copyErr = errors.New("no route") // a copy not sent is not shown
	carry(x, 4, "d", verdict(rules.Duplicate, 10, 1, 4), 300)
	x.Fire(at(310))
	check(t, r, `arrived duplicate "d" 4 @300`, "accept 4 @300")
}
