//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/tcpchaos/tcpchaos/internal/metrics"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/internal/statusline"
	"github.com/tcpchaos/tcpchaos/nfq"
)

// watchers watch a live run from outside its packet path: the metrics
// server (--metrics) and the status line (stderr is a terminal). A nil
// *watchers watches nothing.
type watchers struct {
	metrics  *metrics.Server  // nil: no --metrics
	status   *statusline.Line // nil: stderr is not a terminal
	duration time.Duration    // --duration (0: none)
}

// statusEvery is how often the status line is redrawn.
const statusEvery = 500 * time.Millisecond

// newWatchers opens the --metrics listener, here in the network namespace
// tcpchaos was started in (before --netns is entered), and when stderr is
// a terminal puts the status line under c.App's writers: from then on
// every line written through them prints above it. Nothing is served or
// drawn before start. A bad address is a usage error, a port in use a
// failure; both come before anything is installed.
func newWatchers(c *cli.Context) (*watchers, error) {
	w := &watchers{duration: c.Duration("duration")}
	if addr := c.String("metrics"); addr != "" {
		s, err := metrics.Listen(addr)
		if errors.Is(err, metrics.ErrAddr) {
			return nil, usageError{fmt.Errorf("--metrics: %w", err)}
		} else if err != nil {
			return nil, err
		}
		w.metrics = s
		fmt.Fprintf(c.App.ErrWriter, "tcpchaos: metrics at %s\n", s.URL())
	}
	if f, ok := c.App.ErrWriter.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		w.status = statusline.New(f, func() int {
			cols, _, err := term.GetSize(int(f.Fd()))
			if err != nil {
				return 0
			}
			return cols
		})
		c.App.Writer, c.App.ErrWriter = w.status.Writer(c.App.Writer), w.status.Writer(f)
	}
	return w, nil
}

// timed reports whether the queues time their verdicts (for the metrics).
func (w *watchers) timed() bool { return w != nil && w.metrics != nil }

// start begins serving the metrics of queues and pipes (in the same
// order), of reloads (nil: none) and of what passed the full queues, and
// drawing the status line; the returned stop ends the status line (the
// metrics are served until close).
func (w *watchers) start(queues []*nfq.Queue, pipes []*pipeline.Pipeline, reloads func() metrics.Reloads, full func() (nfq.QueueFull, error)) (stop func()) {
	if w == nil {
		return func() {}
	}
	if w.metrics != nil {
		w.metrics.Serve(metrics.NewCollector(metrics.Source{
			Queues:    func() []metrics.Queue { return metrics.Snapshot(queues, pipes, true) },
			Reloads:   reloads,
			QueueFull: full,
			Version:   moduleVersion(),
		}))
	}
	if w.status == nil {
		return func() {}
	}
	start, done, exited := time.Now(), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(statusEvery)
		defer t.Stop()
		for {
			w.status.Set(statusText(time.Since(start), w.duration, metrics.Snapshot(queues, pipes, false)))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-exited
		w.status.Clear()
	}
}

// close stops serving the metrics.
func (w *watchers) close() error {
	if w.metrics == nil {
		return nil
	}
	return w.metrics.Close()
}

// statusText is the status line: elapsed time (and --duration), tracked
// connections, each rule's faults, held packets.
func statusText(elapsed, duration time.Duration, qs []metrics.Queue) string {
	var total pipeline.Summary
	var held int64
	for _, q := range qs {
		total.Add(q.Summary)
		held += q.Stats.Held
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tcpchaos: %s", elapsed.Round(100*time.Millisecond))
	if duration > 0 {
		fmt.Fprintf(&b, " / %s", duration)
	}
	fmt.Fprintf(&b, " | %d tracked | faults:", total.Tracked)
	if len(total.Rules) == 0 {
		b.WriteString(" no rules")
	}
	for i, r := range total.Rules {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %s %d", r.Name, r.Hits)
	}
	fmt.Fprintf(&b, " | %d held", held)
	return b.String()
}
