package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/ladder"
)

func timelineCommand() *cli.Command {
	return &cli.Command{
		Name:      "timeline",
		Usage:     "draw the ladder diagrams of an events file's connections",
		UsageText: "tcpchaos timeline EVENTS.jsonl [--conn ADDR:PORT|ID] [--all] [--ascii]",
		Description: "Reads an events file (run --events, replay --events) and draws a ladder diagram of\n" +
			"each connection a rule faulted (dropped, delayed or duplicated one of its packets),\n" +
			"or of every connection with --all, or of the one --conn names (by the client's\n" +
			"address:port as in the events' \"conn\", or by its conn_id). The first retransmission\n" +
			"after a fault says how long after it came. Colour only when stdout is a terminal.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "conn", Usage: "draw the connection whose client is `ADDR:PORT`, or whose conn_id is ID"},
			&cli.BoolFlag{Name: "all", Usage: "draw every connection, not only those a rule faulted"},
			&cli.BoolFlag{Name: "ascii", Usage: "draw with ASCII characters only (for logs)"},
		},
		Action: runTimeline,
	}
}

func runTimeline(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError{errors.New("timeline: want an events file (tcpchaos timeline EVENTS.jsonl)")}
	}
	file := c.Args().First()
	if c.NArg() > 1 {
		var err error
		if c, err = flagsAfter(c); err != nil {
			return err
		}
	}
	keep, err := connFilter(c.String("conn"), c.Bool("all"))
	if err != nil {
		return err
	}
	evs, err := events.ReadFile(file)
	if err != nil {
		return err
	}
	var shown []events.Event
	for _, conn := range ladder.ByConnection(evs) {
		if keep(conn) {
			shown = append(shown, conn...)
		}
	}
	switch {
	case len(shown) > 0:
	case c.String("conn") != "":
		return fmt.Errorf("timeline: no connection in %s matches --conn %s", file, c.String("conn"))
	case len(evs) > 0 && !c.Bool("all"):
		fmt.Fprintf(c.App.Writer, "no rule faulted any of the %d connections in %s (--all draws them)\n",
			len(ladder.ByConnection(evs)), file)
		return nil
	}
	ladder.Write(c.App.Writer, shown, ladder.Options{ASCII: c.Bool("ascii"), Color: isTerminal(c.App.Writer)})
	return nil
}

// connFilter returns what selects a connection's events: --conn (a
// client address:port or a conn_id), else --all, else a fault among them.
func connFilter(conn string, all bool) (func([]events.Event) bool, error) {
	if conn == "" {
		return func(evs []events.Event) bool {
			if all {
				return true
			}
			for i := range evs {
				if evs[i].Faulted() {
					return true
				}
			}
			return false
		}, nil
	}
	if id, err := strconv.ParseUint(conn, 10, 64); err == nil {
		return func(evs []events.Event) bool { return evs[0].ConnID == id }, nil
	}
	client, err := netip.ParseAddrPort(conn)
	if err != nil {
		return nil, usageError{fmt.Errorf("--conn %q: want the client's ADDR:PORT (IPv6 bracketed) or a conn_id", conn)}
	}
	return func(evs []events.Event) bool { return evs[0].Client == client }, nil
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// flagsAfter parses the flags given after the file, which the cli leaves
// as arguments, over those given before it.
func flagsAfter(c *cli.Context) (*cli.Context, error) {
	set := flag.NewFlagSet(c.Command.Name, flag.ContinueOnError)
	set.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(set); err != nil {
			return nil, err
		}
	}
	for _, name := range c.FlagNames() {
		if c.IsSet(name) {
			if err := set.Set(name, fmt.Sprint(c.Value(name))); err != nil {
				return nil, err
			}
		}
	}
	if err := set.Parse(c.Args().Tail()); err != nil {
		return nil, usageError{fmt.Errorf("timeline: %w", err)}
	}
	if set.NArg() > 0 {
		return nil, usageError{fmt.Errorf("timeline: want one events file, not also %q", set.Args())}
	}
	return cli.NewContext(c.App, set, c), nil
}
