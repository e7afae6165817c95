package events

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestAsyncWritesEveryEventBeforeClose: events emitted from several
// goroutines are all written, and flushed, by the time Close returns.
func TestAsyncWritesEveryEventBeforeClose(t *testing.T) {
	var b bytes.Buffer
	a := NewAsync(NewJSONLines(&b), 16)
	go a.Run()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5 {
				a.Emit(Event{ConnID: uint64(g*100 + i), Kind: statetrack.Syn, Flags: statetrack.SYN})
			}
		})
	}
	wg.Wait()
	a.Close()
	s := a.Stats()
	if n := strings.Count(b.String(), "\n"); uint64(n) != s.Emitted || s.Emitted+s.Dropped != 20 {
		t.Errorf("%d lines written, stats %+v; want every emitted event written, 20 in all", n, s)
	}
}

// TestAsyncDropsWhatDoesNotFit: with the writer stopped, Emit returns at
// once and counts what the buffer cannot take.
func TestAsyncDropsWhatDoesNotFit(t *testing.T) {
	var b bytes.Buffer
	a := NewAsync(NewJSONLines(&b), 3)
	for range 5 {
		a.Emit(Event{Kind: statetrack.Syn})
	}
	if s := a.Stats(); s.Emitted != 3 || s.Dropped != 2 {
		t.Errorf("stats %+v, want 3 queued and 2 dropped", s)
	}
	go a.Run()
	a.Close()
	if strings.Count(b.String(), "\n") != 3 {
		t.Errorf("%q written, want the 3 queued events", b.String())
	}
}

func TestAsyncLeavesTheWriteErrorToTheDestination(t *testing.T) {
	j := NewJSONLines(&failingWriter{})
	a := NewAsync(j, 4)
	a.Emit(Event{})
	go a.Run()
	a.Close()
	if err := j.Flush(); err == nil {
		t.Error("the write error was lost")
	}
}

func TestAsyncEmitDoesNotAllocate(t *testing.T) {
	a := NewAsync(NewJSONLines(&bytes.Buffer{}), 1)
	e := sampleEvents()[0]
	if n := testing.AllocsPerRun(1000, func() { a.Emit(e) }); n != 0 {
		t.Errorf("Emit allocates %.1f times", n)
	}
	if s := a.Stats(); s.Emitted != 1 || s.Dropped != 1000 {
		t.Errorf("stats %+v, want 1 queued and 1000 dropped", s)
	}
}

// TestEventSize keeps Buffer's documented memory true: update both when
// Event grows.
func TestEventSize(t *testing.T) {
	if n := unsafe.Sizeof(Event{}); n != 176 {
		t.Errorf("an Event takes %d bytes; Buffer's doc says 176", n)
	}
}
