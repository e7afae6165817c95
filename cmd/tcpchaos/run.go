//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/tcpchaos/tcpchaos/ctlclient"
	"github.com/tcpchaos/tcpchaos/internal/config"
	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/expect"
	"github.com/tcpchaos/tcpchaos/internal/metrics"
	"github.com/tcpchaos/tcpchaos/internal/netlab"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "intercept live traffic and apply a config's rules",
		UsageText: "tcpchaos run -c FILE [--duration D] [--events FILE] [--netns NAME|PATH] [--control PATH] [--report FILE] [--junit FILE] [--pcap FILE [--pcap-all]] [--linger D] [--metrics ADDR] [-- CMD [ARGS...]]",
		Description: "Installs tcpchaos's own iptables/ip6tables chains, binds the NFQUEUE queue(s)\n" +
			"fail-open, and applies the rules until SIGINT/SIGTERM or --duration. Then held\n" +
			"packets are released, the chains removed, the queue closed and a summary printed.\n" +
			"Without --events, one line per fault goes to stderr.\n\n" +
			"With -- CMD [ARGS...], CMD is started once the rules are installed and the queue\n" +
			"bound, with tcpchaos's environment and standard input/output/error, in the network\n" +
			"namespace tcpchaos was started in, not the --netns one (place it with e.g.\n" +
			"`ip netns exec client curl ...`), in a process group of its own. The run ends\n" +
			"--linger after CMD exits. SIGINT/SIGTERM or --duration stop CMD first: SIGTERM to\n" +
			"its process group, SIGKILL 5s later. CMD's exit status (128+N when signal N\n" +
			"killed it) must be 0 unless an expect: item of type exit says otherwise; a CMD\n" +
			"that cannot be started fails the run (exit status 1).\n\n" + steerHelp + expectHelp,
		Flags: append(append(append(configFlags(true),
			&cli.DurationFlag{Name: "duration", Usage: "stop after `D`", DefaultText: "until interrupted"},
			&cli.StringFlag{Name: "events", Usage: "write events as JSON lines to `FILE` (\"-\": stdout)"},
			&cli.StringFlag{Name: "netns", Usage: "run inside the network namespace `NAME` (/run/netns/NAME) or PATH"},
			&cli.StringFlag{Name: "mode", Usage: "override intercept.mode with `MODE` (forward or local)"},
			&cli.StringFlag{Name: "queue", Usage: "override intercept.queue with queue number `N`"},
			&cli.BoolFlag{Name: "verbose", Usage: "log the queue's diagnostics to stderr"},
			&cli.DurationFlag{Name: "linger", Value: defaultLinger, Usage: "with -- CMD: keep intercepting `D` after CMD exits (0: stop at once)"},
			&cli.StringFlag{Name: "metrics", Usage: "serve Prometheus metrics at http://`ADDR`/metrics (HOST:PORT; a bare :PORT binds 127.0.0.1), in the namespace tcpchaos was started in"},
			&cli.StringFlag{Name: "control", Usage: "listen for `tcpchaos ctl` on the unix socket `PATH`", DefaultText: ctlclient.DefaultDir + "/[NETNS-]queue-N.sock"},
		), pcapFlags()...), expectFlags()...),
		Action: func(c *cli.Context) error {
			source := newConfigSource(c, map[string]string{"mode": "intercept.mode", "queue": "intercept.queue"})
			cfg, err := source.load(c.String("config"))
			if err != nil {
				return err
			}
			if c.Duration("duration") < 0 {
				return usageError{fmt.Errorf("--duration: negative duration %s", c.Duration("duration"))}
			}
			if c.Duration("linger") < 0 {
				return usageError{fmt.Errorf("--linger: negative duration %s", c.Duration("linger"))}
			}
			if c.Bool("pcap-all") && c.String("pcap") == "" {
				return usageError{errors.New("--pcap-all: needs --pcap FILE")}
			}
			for _, w := range rules.Warnings(cfg.Rules) {
				fmt.Fprintf(c.App.ErrWriter, "tcpchaos: warning: %s\n", w)
			}
			watch, err := newWatchers(c)
			if err != nil {
				return err
			}
			defer watch.close()
			// Before the control socket, whose directory needs root too.
			if err := netlab.CheckNetAdmin(); err != nil {
				return err
			}
			control := c.String("control")
			if control == "" {
				control = ctlclient.DefaultPath(cfg.Intercept.Queue, c.String("netns"))
			}
			log := slog.New(slog.DiscardHandler)
			if c.Bool("verbose") {
				log = slog.New(slog.NewTextHandler(c.App.ErrWriter, nil))
			}
			steer, err := newSteering(control, c.String("config"), source, cfg, c.App.ErrWriter, log)
			if err != nil {
				return err
			}
			sink, closeEvents, err := openEvents(c.String("events"), events.NewFaults(c.App.ErrWriter))
			if err != nil {
				steer.close()
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if d := c.Duration("duration"); d > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			ev := expect.New(cfg.Expect)
			var total pipeline.Summary
			run := expect.Run{Command: "run", Config: c.String("config"), Seed: cfg.Seed, Start: time.Now()}
			l := live{cfg: cfg, sink: events.Tee{ev, sink}, log: log, netns: c.String("netns"), status: c.App.ErrWriter, summary: c.App.Writer, watch: watch,
				pcap: c.String("pcap"), pcapAll: c.Bool("pcap-all"),
				ended: func(s pipeline.Summary, lost uint64) { total = s; ev.Lost(lost) }, steer: steer}
			var tc *testCommand
			launched, runCtx := false, ctx
			if c.Args().Present() {
				// The run ends when the command is done (a signal or
				// --duration stops the command first), not before.
				var end context.CancelFunc
				runCtx, end = context.WithCancel(context.WithoutCancel(ctx))
				defer end()
				tc = newTestCommand(c.Args().Slice(), c.Duration("linger"), c.App.Reader, c.App.Writer, c.App.ErrWriter, c.App.ErrWriter)
				l.ready = func() { launched = true; tc.launch(ctx, end) }
			}
			runErr := l.run(runCtx)
			if launched {
				<-tc.done
				if tc.err != nil {
					runErr = errors.Join(tc.err, runErr)
				} else {
					ev.Exited(tc.status)
				}
			}
			if err := errors.Join(runErr, closeEvents()); err != nil {
				return err
			}
			run.End = time.Now()
			return finishExpectations(c, ev, run, total)
		},
	}
}

// live is one `tcpchaos run`: queues, interception and pipelines.
type live struct {
	cfg config.Config
	// sink is where the events go, from a writer goroutine that run
	// starts and stops (the packet path only queues them).
	sink            events.Writer
	log             *slog.Logger
	netns           string    // run inside this namespace ("" = current)
	status, summary io.Writer // progress lines; the final summary
	ready           func()    // called once the interception is installed (nil: nothing)
	// pcap is the pcapng file to record to ("": none); pcapAll records
	// every connection there.
	pcap    string
	pcapAll bool
	watch   *watchers // the metrics and the status line, from then on (nil: none)
	// ended is given the run's summary and the count of events lost once
	// both are printed (nil: nothing).
	ended func(pipeline.Summary, uint64)
	// steer serves the control socket and reloads (nil: neither); run
	// closes it.
	steer *steering
}

// run binds the queues first (so a queue-number conflict installs nothing),
// then installs the interception, runs until ctx is done, and tears down in
// reverse: chains removed first so that no new packet is queued, then held
// packets released as each queue returns.
func (l live) run(ctx context.Context) error {
	if l.steer != nil {
		defer l.steer.close()
	}
	if l.netns != "" {
		exit, err := netlab.Enter(l.netns)
		if err != nil {
			return err
		}
		defer exit()
	} else if err := netlab.CheckNetAdmin(); err != nil {
		return err
	}

	set := rules.Compile(l.cfg.Rules)
	ic := l.cfg.Intercept
	// Queue only what the rules and the tracker need: the data phase of
	// established connections bypasses the queue (quiet connections) when
	// the pipelines allow it, and only the headers are copied unless a
	// packet with payload may have to be duplicated.
	copyRange := uint32(nfq.HeaderCopyRange)
	if set.NeedsPayload() {
		copyRange = 0
	}
	var rec *recording
	if l.pcap != "" {
		var err error
		if rec, err = createRecording(l.pcap, l.pcapAll, decode.LinkRaw, copyRange, true); err != nil {
			return err
		}
	}
	// The writer goroutine starts with the queues and stops after them.
	sink := l.sink
	if l.steer != nil {
		sink = l.steer.sink(sink)
	}
	evs := events.NewAsync(sink, events.Buffer)
	pipes := pipeline.NewQueues(int(ic.Queues), l.cfg.Tracker, set, l.cfg.Seed, evs, rec.onGone)
	quiet, dark := false, set.Darkens()
	var phases pipeline.QuietPhases
	for _, p := range pipes {
		p.AllowQuietPhases(expect.QuietPhases(l.cfg.Expect))
		quiet = p.AllowQuiet() // the same answers for every pipeline of set
		phases = p.QuietPhases()
	}
	queues := make([]*nfq.Queue, 0, ic.Queues)
	closeAll := func() { // Run with a done context closes a queue at once
		done, cancel := context.WithCancel(context.Background())
		cancel()
		for _, q := range queues {
			q.Run(done)
		}
		rec.close()
	}
	for i, p := range pipes {
		q, err := nfq.Open(nfq.Options{Queue: ic.Queue + uint16(i), MaxQueueLen: ic.QueueLength, Logger: l.log, CopyRange: copyRange, Quiet: quiet, Blackhole: dark, Tap: rec.tap(i), TimeVerdicts: l.watch.timed()}, p)
		if err != nil {
			closeAll()
			return err
		}
		queues = append(queues, q)
	}
	interception, err := nfq.Install(ic, nfq.InstallOptions{Quiet: quiet, Blackhole: dark})
	err = warnMarks(l.status, err)
	if err != nil {
		closeAll()
		return err
	}
	full, err := interception.QueueFullCounter(queues)
	if err != nil {
		closeAll()
		return errors.Join(err, warnMarks(l.status, interception.Remove()))
	}
	defer full.Close()
	fmt.Fprintf(l.status, "tcpchaos: intercepting TCP (%s mode, ports %s, hosts %s) on queue %d",
		ic.Mode, listOrAny(ic.Ports), listOrAny(ic.Hosts), ic.Queue)
	if ic.Queues > 1 {
		fmt.Fprintf(l.status, "-%d", ic.Queue+ic.Queues-1)
	}
	fmt.Fprintf(l.status, " with %d rules (%s); Ctrl-C to stop\n", set.Len(), queueing(set, quiet, phases, copyRange))
	var reloads func() metrics.Reloads
	if l.steer != nil {
		reloads = l.steer.reloadCounts
	}
	stopWatch := l.watch.start(queues, pipes, reloads, full.Read)
	if l.steer != nil {
		fmt.Fprintf(l.status, "tcpchaos: control socket %s (tcpchaos ctl --control %[1]s status)\n", l.steer.path)
	}
	if l.ready != nil {
		l.ready()
	}

	start := time.Now()
	// The queues stop only after the rules that feed them are gone, so
	// that no packet is queued to a queue that is closing.
	queuesCtx, stopQueues := context.WithCancel(context.WithoutCancel(ctx))
	defer stopQueues()
	go evs.Run()
	var g errgroup.Group
	for _, q := range queues {
		g.Go(func() error { return q.Run(queuesCtx) })
	}
	if l.steer != nil {
		l.steer.attach(set, pipes, queues, interception, full, quiet, phases, copyRange)
		l.steer.serve(ctx, l.log)
	} else {
		<-ctx.Done()
	}
	stopWatch()
	kernelDark, kernelDarkErr := interception.DarkDrops() // before the rules and their counters go
	queueFull, queueFullErr := full.Read()
	removeErr := warnMarks(l.status, interception.Remove())
	stopQueues()
	runErr := g.Wait()
	evs.Close() // every event emitted is written

	var total pipeline.Summary
	for _, p := range pipes {
		total.Add(p.Summary())
	}
	fmt.Fprintf(l.summary, "tcpchaos: ran %s\n", time.Since(start).Round(time.Millisecond))
	writeSummary(l.summary, total)
	for _, q := range queues {
		writeQueueStats(l.summary, q.Stats())
	}
	if queueFullErr != nil {
		writeQueueFull(l.summary, 0, 0, queueFullErr.Error())
	} else {
		writeQueueFull(l.summary, queueFull.RulePackets, queueFull.Unseen, "")
	}
	if dark {
		writeDarkStats(l.summary, kernelDark, kernelDarkErr, total, queues)
	}
	pcapErr := rec.close()
	rec.report(l.summary)
	es := evs.Stats()
	fmt.Fprintf(l.summary, "events: %d written, %d dropped (the writer fell behind its buffer of %d)\n", es.Emitted, es.Dropped, events.Buffer)
	if l.ended != nil {
		l.ended(total, es.Dropped)
	}
	return errors.Join(runErr, removeErr, pcapErr)
}

// warnMarks prints to w an error of nfq's that is only a warning
// (nfq.ErrMarksLeft: the rules are fine, tcpchaos's bits are left in some
// connection marks) and returns nil for it; it returns any other error.
func warnMarks(w io.Writer, err error) error {
	if !errors.Is(err, nfq.ErrMarksLeft) {
		return err
	}
	fmt.Fprintf(w, "tcpchaos: warning: %v\n", err)
	return nil
}

// queueing describes what the queue sees under set: every packet or the
// handshake and the close only (less the quiet phases; with data-phase
// rules of one Match.Nth, also the data phase's first packets), whole
// packets or headers.
func queueing(set *rules.Set, quiet bool, phases pipeline.QuietPhases, copyRange uint32) string {
	what := "every packet queued"
	if quiet {
		what = "handshake and close queued, data phase bypasses the queue" + quietPhases(phases)
		if !set.Quietable() {
			what = "handshake, close and the data phase up to the packets the rules' nth selects queued, the rest of the data phase bypasses the queue"
		}
	}
	if copyRange == 0 {
		return what + ", whole packets copied"
	}
	return fmt.Sprintf("%s, %d header bytes copied", what, copyRange)
}

// writeQueueStats prints one queue's verdict counters and what the kernel
// let through without us (fail-open).
func writeQueueStats(w io.Writer, s nfq.Stats) {
	fmt.Fprintf(w, "queue: %d received, %d accepted, %d dropped, %d delayed (%d still held), %d duplicated (%d copies sent, %d failed, %d cancelled at stop, %d skipped), resets: %d RSTs sent, %d failed",
		s.Received, s.Accepted, s.Dropped, s.Delayed, s.Held, s.Duplicated, s.CopiesSent, s.CopiesFailed, s.CopiesCancelled, s.CopiesSkipped, s.ResetsSent, s.ResetsFailed)
	if s.DecodeFailures+s.HandlerPanics+s.VerdictErrors+s.ReadErrors > 0 {
		fmt.Fprintf(w, "; %d not decodable, %d handler panics, %d verdict errors, %d read errors",
			s.DecodeFailures, s.HandlerPanics, s.VerdictErrors, s.ReadErrors)
	}
	if s.KernelErr == nil {
		fmt.Fprintf(w, "; kernel: %d queued, %d passed unseen (fail-open), copy range %d", s.Queued(), s.Unreceived(), s.Kernel.CopyRange)
	}
	fmt.Fprintln(w)
}
