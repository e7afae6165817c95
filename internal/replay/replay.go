// Package replay runs the live path's decoder, tracker and rules over a
// capture file, without root: dropped packets are left out of the output,
// delayed ones move to their release time and duplicates are inserted at
// theirs, all in time order.
package replay

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/execute"
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
	// CopiesSkipped counts the copies of duplicated frames not written
	// because the capture holds the frame in part (cut at the snaplen), as
	// the live path skips those of packets copied in part.
	CopiesSkipped uint64
}

// Run replays every frame of in through p, writing the faulted capture to
// out when out is not nil, and showing each TCP packet and each copy to
// tap when tap is not nil (internal/tap records them). Time is the
// capture's: each packet is handled at its timestamp, held packets and
// copies are written at their deadlines (internal/execute, as the live
// path carries verdicts out), and expiry runs as the capture's clock
// advances.
func Run(in *capture.Reader, out *capture.Writer, p *pipeline.Pipeline, tap execute.Tap) (Counts, error) {
	r := &runner{in: in, out: out, p: p, parser: decode.NewParser()}
	r.x = execute.New(r, execute.Options{KeepHeld: true, Tap: tap})
	err := r.run()
	r.counts.CopiesSkipped = r.x.Stats().CopiesSkipped
	return r.counts, err
}

// runner is the executor's replay Output: every packet let through, held
// or copied is a frame written at the time it is let through.
type runner struct {
	in     *capture.Reader
	out    *capture.Writer
	p      *pipeline.Pipeline
	parser *decode.Parser
	x      *execute.Executor
	counts Counts
	// err is the first failed write; the replay ends with it.
	err error
	// pkt and v are the packet being carried out and its verdict, kept
	// here so that handing them to the executor (which keeps neither)
	// does not move them to the heap on every packet.
	pkt execute.Packet
	v   rules.Verdict
}

func (r *runner) run() error {
	var seg statetrack.Segment
	for r.err == nil {
		f, err := r.in.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		r.counts.Frames++
		r.x.Advance(f.TS)
		if r.err != nil {
			break
		}
		r.p.Expire(f.TS)
		if _, err := r.parser.DecodeFrame(f.Data, f.OrigLen, r.in.LinkType(), &seg); err != nil {
			r.counts.Passed++
			r.write(f)
			continue
		}
		r.counts.TCP++
		r.v = r.p.Handle(&seg, f.TS)
		r.pkt = execute.Packet{Data: f.Data, Len: f.OrigLen}
		r.x.Carry(&r.pkt, &r.v, f.TS)
	}
	if r.err == nil {
		r.x.Finish()
	}
	return r.err
}

// Accept writes the frame (execute.Output).
func (r *runner) Accept(p *execute.Packet, _ *rules.Verdict, now time.Time) { r.writePacket(p, now) }

// Drop leaves the frame out and writes the RSTs of a reset in its stead
// (execute.Output), each behind the dropped frame's link-layer header (on
// Ethernet with the addresses swapped for an RST going back to the
// sender).
func (r *runner) Drop(p *execute.Packet, v *rules.Verdict, now time.Time) {
	rs := v.Resets()
	for i := range rs.N {
		f, err := decode.AppendRSTFrame(nil, p.Data, r.in.LinkType(), &rs.Seg[i], &v.Obs.Seg)
		if err != nil {
			return // DecodeFrame found the IP header, so this cannot fail
		}
		r.write(capture.Frame{Data: f, TS: now, CaptureLen: len(f), OrigLen: len(f)})
	}
}

// Release writes a held frame at the end of its hold (execute.Output).
func (r *runner) Release(p *execute.Packet, _ *rules.Verdict, now time.Time) { r.writePacket(p, now) }

// SendCopy writes one copy of the frame (execute.Output).
func (r *runner) SendCopy(p *execute.Packet, _ *rules.Verdict, now time.Time) error {
	r.writePacket(p, now)
	return r.err
}

// Delivered moves the receiver's state (execute.Output), unless a write
// failed: the replay ends there, and what was not written is not
// delivered.
func (r *runner) Delivered(v *rules.Verdict, now time.Time) {
	if r.err == nil {
		r.p.Deliver(v, now)
	}
}

func (r *runner) writePacket(p *execute.Packet, at time.Time) {
	r.write(capture.Frame{Data: p.Data, TS: at, CaptureLen: len(p.Data), OrigLen: p.Len})
}

// write writes f unless an earlier write failed.
func (r *runner) write(f capture.Frame) {
	if r.out == nil || r.err != nil {
		return
	}
	if err := r.out.Write(f); err != nil {
		r.err = fmt.Errorf("write frame %d: %w", r.counts.Written+1, err)
		return
	}
	r.counts.Written++
}
