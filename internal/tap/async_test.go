package tap

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/execute"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestSlowWriterDoesNotHoldUpTheQueues: a Recorder writing through an
// Async to a destination that blocks (a full disk's stall, a paused pipe)
// returns at once from every packet: what the buffer cannot hold is
// dropped and counted, the rest written once the destination moves, and
// nothing keeps the caller's bytes.
func TestSlowWriterDoesNotHoldUpTheQueues(t *testing.T) {
	entered, unblock := make(chan struct{}, 1), make(chan struct{})
	w := &lines{}
	a := NewAsync(writerFunc(func(f capture.Frame, c string) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-unblock
		return w.Write(f, c)
	}), 2, 0)
	go a.Run()
	r := New(a, Options{All: true})
	done := make(chan struct{})
	go func() {
		defer close(done)
		show(r.Queue(0), 1, 1, rules.Accept)
		<-entered
		for n := 2; n <= 5; n++ {
			show(r.Queue(n%2), 1, n, rules.Accept)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the packet path waits for the writer")
	}
	close(unblock)
	written, dropped, err := a.Close()
	// The writer took the first frame and waits in it; two more are
	// buffered; the last two find the buffer full.
	if written != 3 || dropped != 2 || err != nil {
		t.Errorf("%d written, %d dropped, err %v, want 3 and 2", written, dropped, err)
	}
	w.check(t, "c1p1 @1", "c1p2 @2", "c1p3 @3")
}

// TestAsyncBoundsBytesAndKeepsTheFirstError: a frame beyond the byte bound
// is dropped; after the destination's first error nothing more is
// written, and Close returns that error.
func TestAsyncBoundsBytesAndKeepsTheFirstError(t *testing.T) {
	a := NewAsync(writerFunc(func(f capture.Frame, c string) error { return errors.New("disk full") }), 0, 6)
	frame := capture.Frame{Data: []byte("abcd"), CaptureLen: 4, OrigLen: 4}
	a.Write(frame, "")
	a.Write(frame, "") // 8 bytes queued: over the bound, with Run not started
	go a.Run()
	written, dropped, err := a.Close()
	if written != 0 || dropped != 1 || err == nil || err.Error() != "disk full" {
		t.Errorf("%d written, %d dropped, err %v, want 0, 1 and the destination's error", written, dropped, err)
	}
}

// TestQueuesAndTrackersConcurrently: several queues' packets, copies and
// departures at once, through an Async, under the race detector: every
// packet of the touched connections is written.
func TestQueuesAndTrackersConcurrently(t *testing.T) {
	w := &lines{}
	a := NewAsync(w, 1<<12, 0)
	go a.Run()
	r := New(a, Options{MaxConns: 4})
	var wg sync.WaitGroup
	for q := range 4 {
		wg.Go(func() {
			tp, gone := r.Queue(q), r.OnGone(q)
			dup := &rules.Verdict{Decision: rules.Decision{Action: rules.Duplicate, Copies: 1, Rule: 0, RuleName: "r"}}
			for conn := uint64(1); conn <= 50; conn++ {
				show(tp, conn, 1, rules.Accept)
				show(tp, conn, 2, rules.Drop)
				dup.Obs.ConnID = conn
				tp.CopySent(&execute.Packet{Data: []byte("copy"), Len: 4}, dup, 1, t0)
				gone(statetrack.Gone{ConnID: conn})
			}
		})
	}
	wg.Wait()
	written, dropped, err := a.Close()
	if s := r.Stats(); written != 4*50*3 || dropped != 0 || err != nil || s.Conns != 4*50 || len(r.touched)+len(r.waiting) != 0 {
		t.Errorf("%d written, %d dropped, err %v, stats %+v, %d entries left; want 600, 200 connections, none left", written, dropped, err, s, len(r.touched)+len(r.waiting))
	}
}
