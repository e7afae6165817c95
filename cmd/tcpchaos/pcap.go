package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/execute"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/internal/tap"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// pcapFlags are run's flags for its pcapng recording.
func pcapFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "pcap", Usage: "write the connections a rule touched, from their first packet to their last, each packet as it arrived, to `FILE` " +
			"(pcapng, a comment on each fault; headers only unless a rule duplicates packets with payload; a data phase that bypasses the queue is not in it)"},
		&cli.BoolFlag{Name: "pcap-all", Usage: "with --pcap: write every intercepted connection"},
	}
}

// recording is a pcapng file being written through a tap.Recorder.
type recording struct {
	path string
	all  bool
	w    *capture.NgWriter
	r    *tap.Recorder
}

// createRecording creates the pcapng file at path for packets of link
// type link cut at snaplen bytes (0: whole).
func createRecording(path string, all bool, link decode.LinkType, snaplen uint32) (*recording, error) {
	w, err := capture.CreateNg(path, link, snaplen, "tcpchaos "+buildVersion())
	if err != nil {
		return nil, err
	}
	return &recording{path: path, all: all, w: w, r: tap.New(w, tap.Options{All: all, Link: link})}, nil
}

// tap returns the Tap for the executor of pipeline p, queue i; nil for no
// recording.
func (rec *recording) tap(i int, p *pipeline.Pipeline) execute.Tap {
	if rec == nil {
		return nil
	}
	return rec.r.Queue(i, p.RuleName)
}

// onGone returns the tracker's OnGone of queue i, which frees the
// recorder's entry of a connection the tracker forgot; nil for no
// recording.
func (rec *recording) onGone(i int) func(statetrack.Gone) {
	if rec == nil {
		return nil
	}
	return rec.r.OnGone(i)
}

// close closes the file and returns the first error writing it.
func (rec *recording) close() error {
	if rec == nil {
		return nil
	}
	err := rec.w.Close()
	if s := rec.r.Stats(); s.Err != nil {
		err = s.Err
	}
	return err
}

// report says to w what was written and what was left out.
func (rec *recording) report(w io.Writer) {
	if rec == nil {
		return
	}
	s := rec.r.Stats()
	fmt.Fprintf(w, "pcap: %d packets written to %s", s.Packets, rec.path)
	if !rec.all {
		fmt.Fprintf(w, " (connections a rule touched: %d)", s.Conns)
	}
	if s.LeftOut > 0 {
		fmt.Fprintf(w, "; %d packets left out (a connection's buffer of %d packets was full before its first fault)", s.LeftOut, tap.DefaultMaxPackets)
	}
	if s.Forgotten > 0 {
		fmt.Fprintf(w, "; %d untouched connections' packets forgotten (bounds: %d MiB, %d connections buffered)",
			s.Forgotten, tap.DefaultMaxBytes>>20, tap.DefaultMaxConns)
	}
	if s.Err != nil {
		fmt.Fprintf(w, "; stopped by an error: %v", s.Err)
	}
	fmt.Fprintln(w)
}
