package events

import (
	"sync/atomic"
	"time"
)

// Buffer is the number of events the Async of `tcpchaos run` holds
// between the packet path and the writer: 8192 events of 176 bytes, 1.4
// MB. At the 100,000 events a second of a busy router (ten thousand
// connections opened and closed a second) it absorbs 80 ms of a stalled
// writer (a slow disk, a paused reader of stdout).
const Buffer = 8192

// Async hands events to a writer goroutine through a bounded buffer, so
// that neither encoding nor I/O happen on the packet path. Emit never
// blocks: when the buffer is full the event is dropped and counted. The
// caller starts Run in a goroutine of its own and, after the last Emit,
// calls Close, which waits for every buffered event to be written. Emit is
// safe for concurrent use (one Async serves every queue).
type Async struct {
	ch      chan Event
	dst     Writer
	emitted atomic.Uint64
	dropped atomic.Uint64
	done    chan struct{}
}

// NewAsync returns an Async writing to dst through a buffer of size
// events. It starts nothing: call Run.
func NewAsync(dst Writer, size int) *Async {
	return &Async{ch: make(chan Event, size), dst: dst, done: make(chan struct{})}
}

// Emit queues e for the writer, or drops and counts it when the buffer is
// full. It does not allocate.
func (a *Async) Emit(e Event) {
	select {
	case a.ch <- e:
		a.emitted.Add(1)
	default:
		a.dropped.Add(1)
	}
}

// linger is how long the writer waits after writing what it found, so
// that a steady stream of events wakes it at most once a linger (an event
// sent to a writer waiting on the empty buffer wakes it) and is written
// in batches; a reader of the file sees each event within about a linger.
// The buffer holds 1 ms of 8 million events a second.
const linger = time.Millisecond

// Run writes the queued events to the destination in batches, flushing it
// after each (so that a reader of the file sees events promptly), until
// Close. Call it once. A write error stays with the destination, whose
// owner reports it (Writer.Flush).
func (a *Async) Run() {
	defer close(a.done)
	for e := range a.ch {
		a.dst.Emit(e)
		for range len(a.ch) {
			a.dst.Emit(<-a.ch)
		}
		a.dst.Flush()
		time.Sleep(linger)
	}
}

// Close stops the writer once every queued event is written and flushed.
// Call it after the last Emit, once Run was started; it waits for Run to
// return.
func (a *Async) Close() {
	close(a.ch)
	<-a.done
}

// Stats counts what an Async was given.
type Stats struct {
	// Emitted counts the events queued for the writer (all written by
	// Close); Dropped those that found the buffer full and are missing
	// from the stream.
	Emitted, Dropped uint64
}

// Stats returns the counts so far.
func (a *Async) Stats() Stats { return Stats{Emitted: a.emitted.Load(), Dropped: a.dropped.Load()} }
