//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/viper"
	"github.com/urfave/cli/v2"

	"github.com/tcpchaos/tcpchaos/internal/config"
	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/expect"
	"github.com/tcpchaos/tcpchaos/internal/ladder"
	"github.com/tcpchaos/tcpchaos/internal/netlab"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
)

// demoScenario is the built-in config of `tcpchaos demo`: the rules of
// configs/lost-first-syn.yaml and configs/lost-final-ack.yaml together.
const demoScenario = `
intercept:
  mode: forward           # the router namespace forwards client <-> server
  ports: [8080]
  hosts: [198.18.0.0/15]  # IPv4 only, so ip6tables is not needed
rules:
  - name: lose-first-syn
    match: {packet: syn, from: client, nth: 1}
    action: drop
  - name: lose-final-ack-once
    match: {packet: final-ack, nth: 1}
    action: drop
expect:
  - name: syn-retransmitted
    follows: {rule: lose-first-syn, packet: syn, from: client, nth: 2, within: 3s}
  - name: fin-retransmitted
    follows: {rule: lose-final-ack-once, packet: fin, from: server, nth: 2, within: 3s}
  - name: re-acked-from-time-wait
    follows: {rule: lose-final-ack-once, packet: final-ack, from: client, nth: 2, within: 3s}
`

const (
	// demoTimeout bounds the whole demo: setup, traffic and the wait for
	// the scenario to play out (it takes about 1.3 s).
	demoTimeout = 20 * time.Second
	// closeWait bounds the wait, once both sides have closed, for the
	// server's FIN to be retransmitted (after about 200 ms) and re-ACKed.
	closeWait = 5 * time.Second
	// demoPort is the server's port, the one the scenario intercepts.
	demoPort = 8080
	// demoTools are the programs the demo runs (iproute2 and iptables).
	demoTools = "ip iptables"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:      "demo",
		Usage:     "run a built-in scenario in throwaway network namespaces (needs root)",
		UsageText: "tcpchaos demo [--events FILE]",
		Description: "Creates three network namespaces (client, router, server; addresses from\n" +
			"198.18.0.0/15), runs tcpchaos in the router with a built-in scenario that drops the\n" +
			"client's first SYN and the final ACK of the close, connects a small client to a\n" +
			"small server through it, and shows what happened as a ladder diagram. Everything\n" +
			"it created is removed at the end, also when interrupted. Needs root, ip and iptables.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "events", Usage: "also write the events as JSON lines to `FILE` (\"-\": stdout)"},
		},
		Action: func(c *cli.Context) error {
			extra, closeEvents, err := openEvents(c.String("events"), nil)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			_, err = runDemo(ctx, c.App.Writer, extra)
			return errors.Join(err, closeEvents())
		},
	}
}

// demoConfig decodes demoScenario as a config file would be.
func demoConfig() (config.Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(strings.NewReader(demoScenario)); err != nil {
		return config.Config{}, fmt.Errorf("read the demo scenario: %w", err)
	}
	cfg, err := config.Decode(v.AllSettings())
	if err != nil {
		return config.Config{}, fmt.Errorf("decode the demo scenario: %w", err)
	}
	return cfg, nil
}

// demoPrefix is the prefix of the demo's namespace names.
func demoPrefix() string { return fmt.Sprintf("tcpchaos-demo-%d", os.Getpid()) }

// checkDemoHost refuses, saying what to do, when the demo cannot run.
func checkDemoHost() error {
	err := netlab.Check(strings.Fields(demoTools)...)
	var missing *netlab.MissingError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &missing):
		return fmt.Errorf("demo needs %s: install them with `apt-get install -y iptables iproute2` (or run `make demo`): %w",
			strings.Join(missing.Tools, " and "), err)
	case errors.Is(err, netlab.ErrNotRoot), errors.Is(err, netlab.ErrNoNetAdmin):
		return fmt.Errorf("demo needs root, to create network namespaces and iptables rules (try sudo): %w", err)
	}
	return fmt.Errorf("demo: %w", err)
}

// runDemo plays the built-in scenario, writes its story to out and returns
// the events it collected (also sent to extra, if not nil). Whatever it
// created is gone when it returns: namespaces, the processes and sockets in
// them, and the router's iptables rules.
func runDemo(ctx context.Context, out io.Writer, extra events.Writer) (evs []events.Event, err error) {
	if err := checkDemoHost(); err != nil {
		return nil, err
	}
	cfg, err := demoConfig()
	if err != nil {
		return nil, err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()

	lab := netlab.New(demoPrefix())
	fmt.Fprintf(out, "creating network namespaces %[1]s-client, %[1]s-router, %[1]s-server\n", lab.Prefix())
	defer func() {
		if cerr := lab.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("remove the demo's namespaces: %w", cerr))
			return
		}
		fmt.Fprintf(out, "\nremoved the namespaces %s-*, with tcpchaos's rules and every socket in them\n", lab.Prefix())
		if parent.Err() != nil {
			err = fmt.Errorf("demo interrupted: %w", parent.Err())
		}
	}()
	tp, err := lab.Topology()
	if err != nil {
		return nil, err
	}

	col := newCollector()
	ev := expect.New(cfg.Expect)
	var sink events.Writer = events.Tee{col, ev}
	if extra != nil {
		sink = events.Tee{col, ev, extra}
	}
	var total pipeline.Summary
	var summary strings.Builder
	liveCtx, stopLive := context.WithCancel(ctx)
	defer stopLive()
	ready := make(chan struct{})
	liveDone := make(chan error, 1)
	go func() {
		liveDone <- live{
			cfg: cfg, sink: sink, log: slog.New(slog.DiscardHandler), netns: tp.Router.Path,
			status: io.Discard, summary: &summary, ready: func() { close(ready) },
			ended: func(s pipeline.Summary, lost uint64) { total = s; ev.Lost(lost) },
		}.run(liveCtx)
	}()
	select {
	case <-ready:
	case err := <-liveDone:
		return nil, fmt.Errorf("start tcpchaos in %s: %w", tp.Router.Name, err)
	}
	fmt.Fprintf(out, "router: tcpchaos intercepts forwarded TCP on port %d with the built-in scenario:\n", demoPort)
	for _, r := range cfg.Rules {
		fmt.Fprintf(out, "  %-20s %s\n", r.Name, describeRule(r))
	}

	playErr := play(ctx, out, tp, col)
	stopLive() // removes the rules, closes the queue, writes the summary
	liveErr := <-liveDone
	evs = col.Events()

	fmt.Fprintln(out, "\nwhat the router saw:")
	ladder.Write(out, evs, ladder.Options{})
	fmt.Fprintln(out, "\nwhat you just saw:")
	paragraphs, storyErr := findStory(evs).explain()
	for _, p := range paragraphs {
		writeWrapped(out, p, "  • ", 78)
	}
	if storyErr != nil {
		writeWrapped(out, storyErr.Error(), "  – ", 78)
	}
	fmt.Fprintln(out, "\nthe router's tcpchaos, as `tcpchaos run` reports at its end:")
	fmt.Fprint(out, summary.String())
	expect.WriteLines(out, ev.End(time.Time{}, ruleHits(total)))
	if playErr != nil {
		storyErr = nil // the missing steps follow from playErr
	}
	return evs, errors.Join(playErr, storyErr, liveErr)
}

// play runs the server and the client, waits until the router has seen the
// whole scenario, and shows the client socket's state.
func play(ctx context.Context, out io.Writer, tp *netlab.Topology, col *collector) error {
	addr := netip.AddrPortFrom(tp.Server4, demoPort).String()
	ln, err := tp.Server.Listen("tcp", addr)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- serveOnce(ctx, ln) }()
	clientErr := runClient(ctx, out, tp.Client, addr)
	if clientErr != nil {
		ln.Close() // the server may still wait for the connection
	}
	if err := errors.Join(clientErr, <-served); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, closeWait)
	defer cancel()
	if err := col.waitFor(wctx, func(evs []events.Event) bool { return findStory(evs).complete() }); err != nil {
		return fmt.Errorf("wait %s for the client's re-ACK from TIME_WAIT: %w", closeWait, err)
	}
	ss, err := tp.Client.Run("ss", "-tanoH", "dport", "=", fmt.Sprint(demoPort))
	if err != nil {
		fmt.Fprintf(out, "client: (ss failed: %v)\n", err)
	} else {
		fmt.Fprintf(out, "client: its socket now, as ss shows it:\n  %s\n", strings.Join(strings.Fields(ss), " "))
	}
	return nil
}

// serveOnce accepts one connection, answers its first line, and closes it
// once the client has closed its side: the server is the passive closer.
func serveOnce(ctx context.Context, ln net.Listener) error {
	stopLn := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopLn()
	conn, err := ln.Accept()
	ln.Close()
	if err != nil {
		return fmt.Errorf("server: accept: %w", err)
	}
	defer conn.Close()
	stopConn := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopConn()
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("server: read: %w", err)
	}
	if _, err := io.WriteString(conn, "echo: "+line); err != nil {
		return fmt.Errorf("server: write: %w", err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("server: wait for the client's close: %w", err)
	}
	if err := conn.Close(); err != nil {
		return fmt.Errorf("server: close: %w", err)
	}
	return nil
}

// runClient connects from the client namespace, sends a line, reads the
// answer and closes first: the client is the active closer.
func runClient(ctx context.Context, out io.Writer, ns *netlab.NS, addr string) error {
	start := time.Now()
	conn, err := ns.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("client: connect to %s: %w", addr, err)
	}
	defer conn.Close()
	fmt.Fprintf(out, "client: connected %s -> %s after %.2f s\n", conn.LocalAddr(), addr, time.Since(start).Seconds())
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	const hello = "hello through tcpchaos\n"
	if _, err := io.WriteString(conn, hello); err != nil {
		return fmt.Errorf("client: write: %w", err)
	}
	answer, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("client: read: %w", err)
	}
	fmt.Fprintf(out, "client: sent %q, got %q\n", hello, answer)
	if err := conn.Close(); err != nil {
		return fmt.Errorf("client: close: %w", err)
	}
	fmt.Fprintln(out, "client: closed first (the active closer); the server closes when it reads the end")
	return nil
}
