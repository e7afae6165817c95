// Package replay runs the live path's decoder, tracker and rules over a
// capture file, without root: dropped packets are left out of the output,
// delayed ones move to their release time and duplicates are inserted at
// theirs, all in time order.
package replay

import (
	"container/heap"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Counts says what a replay read and wrote.
type Counts struct {
	// Frames read from the input; TCP of them decoded as TCP segments;
	// Passed were not TCP (or not decodable) and were copied through as they
	// were.
	Frames, TCP, Passed uint64
	// Written frames, including inserted duplicates.
	Written uint64
}

// Run replays every frame of in through p, writing the faulted capture to
// out when out is not nil. Time is the capture's: each packet is handled at
// its timestamp and expiry runs as the capture's clock advances.
func Run(in *capture.Reader, out *capture.Writer, p *pipeline.Pipeline) (Counts, error) {
	r := runner{in: in, out: out, p: p, parser: decode.NewParser()}
	err := r.run()
	return r.counts, err
}

type runner struct {
	in      *capture.Reader
	out     *capture.Writer
	p       *pipeline.Pipeline
	parser  *decode.Parser
	pending pendingHeap
	order   uint64
	counts  Counts
}

func (r *runner) run() error {
	var seg statetrack.Segment
	for {
		f, err := r.in.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		r.counts.Frames++
		if err := r.releaseUntil(f.TS); err != nil {
			return err
		}
		r.p.Expire(f.TS)
		if _, err := r.parser.DecodeFrame(f.Data, f.OrigLen, r.in.LinkType(), &seg); err != nil {
			r.counts.Passed++
			if err := r.write(f); err != nil {
				return err
			}
			continue
		}
		r.counts.TCP++
		if err := r.handle(f, &seg); err != nil {
			return err
		}
	}
	return r.releaseUntil(time.Time{})
}

func (r *runner) handle(f capture.Frame, seg *statetrack.Segment) error {
	v := r.p.Handle(seg, f.TS)
	switch v.Action {
	case rules.Drop:
		return nil
	case rules.Delay:
		r.hold(f, f.TS.Add(v.Hold), &v)
		return nil
	case rules.Duplicate:
		for range v.Copies {
			r.hold(f, f.TS.Add(v.After), &v)
		}
	}
	return r.write(f)
}

// hold keeps a copy of f (the reader may reuse its buffer) to be written and
// delivered at.
func (r *runner) hold(f capture.Frame, at time.Time, v *pipeline.Verdict) {
	f.Data = append([]byte(nil), f.Data...)
	f.TS = at
	r.order++
	heap.Push(&r.pending, &pending{frame: f, verdict: v, order: r.order})
}

// releaseUntil writes and delivers every held frame due at or before t; the
// zero t releases all of them.
func (r *runner) releaseUntil(t time.Time) error {
	for r.pending.Len() > 0 {
		next := r.pending[0]
		if !t.IsZero() && next.frame.TS.After(t) {
			return nil
		}
		heap.Pop(&r.pending)
		r.p.Deliver(next.verdict, next.frame.TS)
		if err := r.write(next.frame); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) write(f capture.Frame) error {
	if r.out == nil {
		return nil
	}
	if err := r.out.Write(f); err != nil {
		return fmt.Errorf("write frame %d: %w", r.counts.Written+1, err)
	}
	r.counts.Written++
	return nil
}

type pending struct {
	frame   capture.Frame
	verdict *pipeline.Verdict
	order   uint64 // ties in time keep the order in which frames were held
}

type pendingHeap []*pending

func (h pendingHeap) Len() int { return len(h) }
func (h pendingHeap) Less(i, j int) bool {
	if !h[i].frame.TS.Equal(h[j].frame.TS) {
		return h[i].frame.TS.Before(h[j].frame.TS)
	}
	return h[i].order < h[j].order
}
func (h pendingHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pendingHeap) Push(x any)   { *h = append(*h, x.(*pending)) }
func (h *pendingHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
