package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/execute"
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
	path  string
	all   bool
	w     *capture.NgWriter
	async *tap.Async // between r and w on the live path; nil in the replay
	r     *tap.Recorder
	// Set by close: the packets written and dropped (the writer fell
	// behind), and the first error.
	written, dropped uint64
	err              error
}

// createRecording creates the pcapng file at path for packets of link
// type link cut at snaplen bytes (0: whole). live puts a tap.Async between
// the packet path and the file, so that no file I/O holds a verdict up;
// the replay writes at once, losing nothing.
func createRecording(path string, all bool, link decode.LinkType, snaplen uint32, live bool) (*recording, error) {
	w, err := capture.CreateNg(path, link, snaplen, "tcpchaos "+buildVersion())
	if err != nil {
		return nil, err
	}
	rec := &recording{path: path, all: all, w: w}
	var dst tap.Writer = w
	if live {
		rec.async = tap.NewAsync(w, 0, 0)
		go rec.async.Run()
		dst = rec.async
	}
	rec.r = tap.New(dst, tap.Options{All: all, Link: link})
	return rec, nil
}

// tap returns the Tap for the executor of queue i; nil for no
// recording.
func (rec *recording) tap(i int) execute.Tap {
	if rec == nil {
		return nil
	}
	return rec.r.Queue(i)
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

// close writes what is buffered, closes the file and returns the first
// error recording; call it once, after the last packet.
func (rec *recording) close() error {
	if rec == nil {
		return nil
	}
	s := rec.r.Stats()
	rec.written, rec.err = s.Packets, s.Err
	if rec.async != nil {
		var err error
		rec.written, rec.dropped, err = rec.async.Close()
		if rec.err == nil {
			rec.err = err
		}
	}
	if err := rec.w.Close(); rec.err == nil {
		rec.err = err
	}
	return rec.err
}

// report says to w what was written and what was left out, once closed.
func (rec *recording) report(w io.Writer) {
	if rec == nil {
		return
	}
	s := rec.r.Stats()
	fmt.Fprintf(w, "pcap: %d packets written to %s", rec.written, rec.path)
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
	if rec.dropped > 0 {
		fmt.Fprintf(w, "; %d packets dropped (the writer fell behind its buffer of %d packets, %d MiB)",
			rec.dropped, tap.DefaultQueueFrames, tap.DefaultQueueBytes>>20)
	}
	if rec.err != nil {
		fmt.Fprintf(w, "; stopped by an error: %v", rec.err)
	}
	fmt.Fprintln(w)
}
