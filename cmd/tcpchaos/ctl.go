package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpchaos/tcpchaos/ctlclient"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
)

// defaultCtlTimeout bounds a ctl command unless --timeout says otherwise:
// a run that accepts on its socket but never answers (hung) fails the
// command instead of holding it forever. It is longer than a reload that
// changes the interception may take while another program holds the
// xtables lock (each iptables command waits up to 10 s for it), so that
// such a reload is not given up on while it is being applied.
const defaultCtlTimeout = 30 * time.Second

// ctlFlags are the flags of `ctl` and of each of its commands, so that
// they may come before or after the command's name.
func ctlFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "control", Usage: "the control socket `PATH` of the run to steer", DefaultText: "the one socket in " + ctlclient.DefaultDir},
		&cli.BoolFlag{Name: "json", Usage: "print the answer as JSON (the protocol's own), for scripts"},
		&cli.DurationFlag{Name: "timeout", Value: defaultCtlTimeout, Usage: "give up after `D` without the whole answer, connecting included (above zero)"},
	}
}

func ctlCommand() *cli.Command {
	// A flag that does not parse is a usage error in every ctl command
	// too (the app's OnUsageError covers only its own flags).
	usage := func(_ *cli.Context, err error, _ bool) error { return usageError{err} }
	leaf := func(cmd *cli.Command) *cli.Command {
		cmd.Flags = append(cmd.Flags, ctlFlags()...)
		cmd.OnUsageError = usage
		return cmd
	}
	return &cli.Command{
		Name:      "ctl",
		Usage:     "steer a running `tcpchaos run` through its control socket",
		UsageText: "tcpchaos ctl [--control PATH] [--json] [--timeout D] status|conns|rules|reload|set|timeline ...",
		Description: "Talks to the control socket of a running `tcpchaos run` (its --control PATH; without\n" +
			"--control, the one socket in " + ctlclient.DefaultDir + "). Only the user who started the run, and\n" +
			"root, may connect. Output is for people; --json prints the protocol's JSON instead.\n" +
			"Each command gives up after --timeout (default " + defaultCtlTimeout.String() + ") without the whole answer,\n" +
			"connecting included (a reload given up on may still be applied: see ctl status).\n\n" +
			"Exit status: 0 done, 1 the request failed (no such run, no answer within --timeout,\n" +
			"refused reload, unknown rule or connection), 2 bad flags or arguments.",
		Flags:        ctlFlags(),
		OnUsageError: usage,
		Subcommands: []*cli.Command{
			leaf(&cli.Command{Name: "status", Usage: "uptime, config and reloads, counts, queue and kernel counters", Action: ctlStatus}),
			leaf(&cli.Command{Name: "conns", Usage: "the tracked connections, the most recently active first", UsageText: "tcpchaos ctl conns [--state S] [--port P] [--limit N]", Action: ctlConns,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "state", Usage: "only connections with an endpoint in state `S` (ESTABLISHED, TIME_WAIT, ...)"},
					&cli.UintFlag{Name: "port", Usage: "only connections to the server port `P`"},
					&cli.IntFlag{Name: "limit", Value: defaultConnsLimit, Usage: "at most `N` connections (0: all)"},
				}}),
			leaf(&cli.Command{Name: "rules", Usage: "the rules in force, or enable/disable one", UsageText: "tcpchaos ctl rules [enable NAME|disable NAME]", Action: ctlRules,
				Subcommands: []*cli.Command{
					leaf(&cli.Command{Name: "enable", Usage: "enable rule NAME from the next packet on", ArgsUsage: "NAME", Action: ctlSetRule(true)}),
					leaf(&cli.Command{Name: "disable", Usage: "disable rule NAME from the next packet on (it survives a reload that leaves it unchanged)", ArgsUsage: "NAME", Action: ctlSetRule(false)}),
				}}),
			leaf(&cli.Command{Name: "reload", Usage: "read the config file again and apply it (refused: the config in force stays)", Action: ctlReload}),
			leaf(&cli.Command{Name: "set", Usage: "replace the config by another file", UsageText: "tcpchaos ctl set -f FILE", Action: ctlReload,
				Flags: []cli.Flag{&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "the new config `FILE` (required)"}}}),
			leaf(&cli.Command{Name: "timeline", Usage: "the ladder of one tracked connection so far", ArgsUsage: "CONN (a conn id, or the client's ADDR:PORT)", Action: ctlTimeline}),
		},
	}
}

// ctlSetting returns the context in which a ctl flag was given: the
// command's own or, when not given there, ctl's (nil: not given).
func ctlSetting(c *cli.Context, name string) *cli.Context {
	for _, cc := range c.Lineage() {
		if cc.Command != nil && cc.IsSet(name) {
			return cc
		}
	}
	return nil
}

// ctlTimeout returns --timeout, refusing one not above zero.
func ctlTimeout(c *cli.Context) (time.Duration, error) {
	d := defaultCtlTimeout
	if cc := ctlSetting(c, "timeout"); cc != nil {
		d = cc.Duration("timeout")
	}
	if d <= 0 {
		return 0, usageError{fmt.Errorf("ctl: --timeout %s: want a duration above zero (such as %s)", d, defaultCtlTimeout)}
	}
	return d, nil
}

// ctlClient connects to --control, or to the one socket in DefaultDir
// that a run answers on (a killed run leaves its socket behind), trying
// each until ctx is done.
func ctlClient(ctx context.Context, c *cli.Context) (*ctlclient.Client, error) {
	if cc := ctlSetting(c, "control"); cc != nil {
		return ctlclient.New(cc.String("control")), nil
	}
	all, err := filepath.Glob(filepath.Join(ctlclient.DefaultDir, "*.sock"))
	var socks []string
	d := net.Dialer{Timeout: time.Second}
	for _, s := range all {
		conn, err := d.DialContext(ctx, "unix", s)
		if err == nil {
			conn.Close()
		}
		// Live, maybe not ours (EACCES), or too busy to accept (EAGAIN:
		// its backlog is full; the request will say whether it answers).
		if err == nil || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EAGAIN) {
			socks = append(socks, s)
		}
	}
	switch {
	case err != nil:
		return nil, err
	case len(socks) == 0 && ctx.Err() != nil: // the dials gave up, not the runs
		return nil, fmt.Errorf("ctl: looking for a control socket in %s: %w", ctlclient.DefaultDir, ctx.Err())
	case len(socks) == 0:
		return nil, fmt.Errorf("ctl: no control socket in %s: is a tcpchaos run running? (else give --control PATH)", ctlclient.DefaultDir)
	case len(socks) > 1:
		return nil, usageError{fmt.Errorf("ctl: several control sockets in %s (%s): choose one with --control PATH", ctlclient.DefaultDir, strings.Join(socks, ", "))}
	}
	return ctlclient.New(socks[0]), nil
}

// ctlDo runs one request, within --timeout from the search for the
// socket to the end of the answer (ctl has no streaming request), and
// prints its answer: as JSON with --json, else with human.
func ctlDo[T any](c *cli.Context, req func(context.Context, *ctlclient.Client) (T, error), human func(io.Writer, T)) error {
	timeout, err := ctlTimeout(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	timedOut := func(err error) error {
		return fmt.Errorf("ctl %s: no answer within --timeout %s (is the run hung?): %w", c.Command.Name, timeout, err)
	}
	cl, err := ctlClient(ctx, c)
	if errors.Is(err, context.DeadlineExceeded) {
		return timedOut(err)
	}
	if err != nil {
		return err
	}
	defer cl.Close()
	v, err := req(ctx, cl)
	if errors.Is(err, context.DeadlineExceeded) {
		return timedOut(err)
	}
	if err != nil {
		return fmt.Errorf("ctl %s: %w", c.Command.Name, err)
	}
	if cc := ctlSetting(c, "json"); cc != nil && cc.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human(c.App.Writer, v)
	return nil
}

// noArgs refuses arguments to a command that takes none.
func noArgs(c *cli.Context) error {
	if c.Args().Present() {
		return usageError{fmt.Errorf("ctl %s: unexpected arguments %q", c.Command.Name, c.Args().Slice())}
	}
	return nil
}

func ctlStatus(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	return ctlDo(c, func(ctx context.Context, cl *ctlclient.Client) (ctlclient.Status, error) { return cl.Status(ctx) }, writeStatus)
}

func writeStatus(w io.Writer, s ctlclient.Status) {
	fmt.Fprintf(w, "pid %d, up %s (since %s)\n", s.PID, (time.Duration(s.Uptime * float64(time.Second))).Round(time.Millisecond), s.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "config %s, loaded %s; %d reloads, %d refused\n", s.Config, s.Loaded.Format(time.RFC3339), s.Reloads, s.Refused)
	if s.LastError != "" {
		fmt.Fprintf(w, "last reload refused at %s: %s\n", s.LastErrorAt.Format(time.RFC3339), s.LastError)
	}
	data := "queued"
	if s.Quiet {
		data = "bypasses the queue (quiet connections)" + quietPhases(pipeline.QuietPhases{Handshake: s.QuietHandshake, Close: s.QuietClose})
	}
	fmt.Fprintf(w, "rules: %d in force; data phase %s\n", s.Rules, data)
	fmt.Fprintf(w, "connections: %d tracked\n", s.Tracked)
	fmt.Fprintf(w, "packets: %s\n", counts(s.Packets))
	fmt.Fprintf(w, "actions: %s\n", counts(s.Actions))
	for _, q := range s.Queues {
		fmt.Fprintf(w, "queue %d: %d received, %d accepted, %d dropped, %d delayed (%d held), %d duplicated; ",
			q.Number, q.Received, q.Accepted, q.Dropped, q.Delayed, q.Held, q.Duplicated)
		if q.KernelError != "" {
			fmt.Fprintf(w, "kernel counters unknown: %s\n", q.KernelError)
			continue
		}
		fmt.Fprintf(w, "kernel: %d queued, %d passed unseen (fail-open)\n", q.KernelQueued, q.KernelUnseen)
	}
	writeQueueFull(w, s.RulePackets, s.QueueFullUnseen, s.QueueFullError)
}

// writeQueueFull prints, for run's summary and ctl status, how many
// packets reached the NFQUEUE rules and how many of them passed a full
// queue unseen, or why that is unknown (errMsg not empty).
func writeQueueFull(w io.Writer, rulePackets, unseen uint64, errMsg string) {
	if errMsg != "" {
		fmt.Fprintf(w, "interception: packets past a full queue unknown: %s\n", errMsg)
		return
	}
	fmt.Fprintf(w, "interception: %d packets reached the NFQUEUE rules, %d passed the full queue unseen (fail-open, no id)\n", rulePackets, unseen)
}

// counts renders non-zero counts as "a 1, b 2", by name.
func counts(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// defaultConnsLimit is how many connections ctl conns lists unless told:
// a table of a million would be hundreds of megabytes of answer.
const defaultConnsLimit = 1000

func ctlConns(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if p := c.Uint("port"); p > 65535 {
		return usageError{fmt.Errorf("ctl conns: --port %d: want a port number 1-65535", p)}
	}
	if n := c.Int("limit"); n < 0 {
		return usageError{fmt.Errorf("ctl conns: --limit %d: want a number of connections, 0 for all", n)}
	}
	f := ctlclient.ConnFilter{State: strings.ToUpper(c.String("state")), Port: uint16(c.Uint("port")), Limit: c.Int("limit")}
	return ctlDo(c, func(ctx context.Context, cl *ctlclient.Client) ([]ctlclient.Conn, error) { return cl.Conns(ctx, f) }, writeConns)
}

func writeConns(w io.Writer, cs []ctlclient.Conn) {
	now := time.Now()
	writeTable(w, "no tracked connection", "ID\tCLIENT\tSERVER\tCLIENT STATE\tSERVER STATE\tAGE\tIDLE\tPACKETS\tFAULTS", cs,
		func(_ int, cn ctlclient.Conn) string {
			age := "?"
			if !cn.First.IsZero() {
				age = time.Duration(cn.Age * float64(time.Second)).Round(time.Millisecond).String()
			}
			quiet := ""
			if cn.Quiet {
				quiet = " (quiet)"
			}
			return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d", cn.ID, cn.Client, cn.Server, cn.ClientState+quiet, cn.ServerState+quiet,
				age, now.Sub(cn.Last).Round(time.Millisecond), counts(cn.Packets), cn.Faults)
		})
}

// writeTable prints one row per element of xs under header, aligned, or
// none when there are none.
func writeTable[T any](w io.Writer, none, header string, xs []T, row func(int, T) string) {
	if len(xs) == 0 {
		fmt.Fprintln(w, none)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for i, x := range xs {
		fmt.Fprintln(tw, row(i, x))
	}
	tw.Flush()
}

func ctlRules(c *cli.Context) error {
	if c.Args().Present() {
		return usageError{fmt.Errorf("ctl rules: unknown command %q (want enable NAME or disable NAME)", c.Args().First())}
	}
	return ctlDo(c, func(ctx context.Context, cl *ctlclient.Client) ([]ctlclient.Rule, error) { return cl.Rules(ctx) }, writeRules)
}

func writeRules(w io.Writer, rs []ctlclient.Rule) {
	writeTable(w, "no rules in force", "#\tNAME\tENABLED\tHITS\tLIMIT LEFT\tACTION\tMATCH", rs,
		func(i int, r ctlclient.Rule) string {
			left := "-"
			if r.LimitLeft != nil {
				left = fmt.Sprintf("%d of %d", *r.LimitLeft, r.Limit)
			}
			return fmt.Sprintf("%d\t%s\t%s\t%d\t%s\t%s\t%s (probability %g)", i+1, r.Name, yesNo(r.Enabled), r.Hits, left, r.Action, r.Match, r.Probability)
		})
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func ctlSetRule(on bool) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() != 1 {
			return usageError{fmt.Errorf("ctl rules %s: want one rule NAME", c.Command.Name)}
		}
		name := c.Args().First()
		return ctlDo(c, func(ctx context.Context, cl *ctlclient.Client) (ctlclient.Rule, error) {
			return cl.SetRuleEnabled(ctx, name, on)
		},
			func(w io.Writer, r ctlclient.Rule) {
				fmt.Fprintf(w, "rule %s: enabled %s (from the next packet on)\n", r.Name, yesNo(r.Enabled))
			})
	}
}

// ctlReload serves `reload` and `set -f FILE`.
func ctlReload(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	file := ""
	if c.Command.Name == "set" {
		if c.String("file") == "" {
			return usageError{errors.New("ctl set: want -f FILE, the new config file")}
		}
		var err error
		if file, err = filepath.Abs(c.String("file")); err != nil {
			return usageError{fmt.Errorf("ctl set: -f %s: %w", c.String("file"), err)}
		}
	}
	return ctlDo(c, func(ctx context.Context, cl *ctlclient.Client) (ctlclient.Reload, error) {
		if file != "" {
			return cl.SetConfig(ctx, file)
		}
		return cl.Reload(ctx)
	}, func(w io.Writer, r ctlclient.Reload) {
		changed := "nothing changed"
		if len(r.Changed) > 0 {
			changed = "changed " + strings.Join(r.Changed, " and ")
		}
		fmt.Fprintf(w, "reloaded %s: %s\n", r.Config, changed)
	})
}

func ctlTimeline(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError{errors.New("ctl timeline: want one CONN (a conn id, or the client's ADDR:PORT)")}
	}
	conn := c.Args().First()
	if _, err := strconv.ParseUint(conn, 10, 64); err != nil && !strings.Contains(conn, ":") {
		return usageError{fmt.Errorf("ctl timeline: %q: want a conn id, or the client's ADDR:PORT", conn)}
	}
	return ctlDo(c, func(ctx context.Context, cl *ctlclient.Client) (ctlclient.Timeline, error) {
		return cl.Timeline(ctx, conn)
	},
		func(w io.Writer, t ctlclient.Timeline) { io.WriteString(w, t.Ladder) })
}

// quietPhases names the quiet phases in force after the data phase's
// bypass ("" for none).
func quietPhases(q pipeline.QuietPhases) string {
	switch {
	case q.Handshake && q.Close:
		return ", and so do the third ACK (quiet handshake) and what passes between the first FIN and the second (quiet close)"
	case q.Handshake:
		return ", and so does the third ACK (quiet handshake)"
	case q.Close:
		return ", and so does what passes between the first FIN and the second (quiet close)"
	}
	return ""
}
