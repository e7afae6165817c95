package tap

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/tcpchaos/tcpchaos/internal/capture"
)

// Default bounds of an Async's buffer: a second of 8,000 packets, and at
// most 16 MiB of their bytes (whole packets copied, 256 of 64 KiB ones).
const (
	DefaultQueueFrames = 8192
	DefaultQueueBytes  = 16 << 20
)

// Async is a Writer that hands frames to a writer goroutine through a
// bounded buffer, so that no file I/O happens on the packet path (a slow
// disk, a paused reader of a pipe): Write never blocks, and drops and
// counts a frame that finds the buffer full. Call Run in a goroutine of
// its own and, after the last Write, Close, which waits for every buffered
// frame to be written.
type Async struct {
	dst       Writer
	ch        chan record
	maxBytes  int64
	queued    atomic.Int64 // bytes in ch
	dropped   atomic.Uint64
	done      chan struct{}
	closeOnce sync.Once
	// Set by Run, read after done is closed.
	written uint64
	err     error
}

// record is a frame waiting for the writer, with its comment.
type record struct {
	f       capture.Frame
	comment string
}

// NewAsync returns an Async writing to dst through a buffer of at most
// frames frames and bytes bytes of their data (0: the defaults).
func NewAsync(dst Writer, frames, bytes int) *Async {
	if frames <= 0 {
		frames = DefaultQueueFrames
	}
	if bytes <= 0 {
		bytes = DefaultQueueBytes
	}
	return &Async{dst: dst, ch: make(chan record, frames), maxBytes: int64(bytes), done: make(chan struct{})}
}

// Write queues a copy of f for the writer, or drops and counts it when the
// buffer is full. It always returns nil: the destination's first error is
// Close's.
func (a *Async) Write(f capture.Frame, comment string) error {
	n := int64(len(f.Data))
	if a.queued.Add(n) > a.maxBytes {
		a.queued.Add(-n)
		a.dropped.Add(1)
		return nil
	}
	f.Data = bytes.Clone(f.Data)
	select {
	case a.ch <- record{f, comment}:
	default:
		a.queued.Add(-n)
		a.dropped.Add(1)
	}
	return nil
}

// Run writes the queued frames to the destination until Close; after the
// destination's first error it writes nothing more. Call it once.
func (a *Async) Run() {
	defer close(a.done)
	for rec := range a.ch {
		a.queued.Add(-int64(len(rec.f.Data)))
		if a.err != nil {
			continue
		}
		if a.err = a.dst.Write(rec.f, rec.comment); a.err == nil {
			a.written++
		}
	}
}

// Close stops the writer once every queued frame is written, and returns
// the number written, the number dropped and the destination's first
// error. Call it after the last Write, once Run was started; it waits for
// Run to return, and may be called again.
func (a *Async) Close() (written, dropped uint64, err error) {
	a.closeOnce.Do(func() { close(a.ch) })
	<-a.done
	return a.written, a.dropped.Load(), a.err
}
