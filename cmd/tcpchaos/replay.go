package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/expect"
	"github.com/tcpchaos/tcpchaos/internal/ladder"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/internal/replay"
	"github.com/tcpchaos/tcpchaos/rules"
)

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:      "replay",
		Usage:     "apply a config's rules to a capture offline (no root needed)",
		UsageText: "tcpchaos replay -c FILE --pcap IN [--out OUT] [--events FILE] [--ladder] [--report FILE] [--junit FILE]",
		Description: "Runs the live path's decoder, tracker and rules over IN (pcap or pcapng; Ethernet,\n" +
			"raw IP, Linux cooked or loopback). OUT gets the faulted capture: dropped packets\n" +
			"removed, delayed packets moved to their release time, duplicates inserted, in time\n" +
			"order. An OUT named *.pcapng gets instead what run --pcap-all records: every TCP\n" +
			"packet as it arrived, a comment on each fault (\"dropped by RULE\"), copies and RSTs\n" +
			"as they were sent. Events go to --events as JSON lines (\"-\" for stdout); a summary\n" +
			"to stdout.\n" +
			expectHelp,
		Flags: append(append(configFlags(true),
			&cli.StringFlag{Name: "pcap", Required: true, Usage: "input capture `IN`"},
			&cli.StringFlag{Name: "out", Usage: "write the faulted capture to `OUT` (pcap; *.pcapng: the packets as they arrived, faults in comments)"},
			&cli.StringFlag{Name: "events", Usage: "write events as JSON lines to `FILE` (\"-\": stdout)"},
			&cli.BoolFlag{Name: "ladder", Usage: "print a ladder diagram of each connection (keeps every event in memory: for small captures)"},
		), expectFlags()...),
		Action: runReplay,
	}
}

func runReplay(c *cli.Context) error {
	cfg, err := loadConfig(c, nil)
	if err != nil {
		return err
	}
	in, err := capture.Open(c.String("pcap"))
	if err != nil {
		return err
	}
	defer in.Close()

	var (
		out *capture.Writer
		rec *recording
	)
	switch path := c.String("out"); {
	case strings.HasSuffix(path, ".pcapng"):
		if rec, err = createRecording(path, true, in.LinkType(), in.Snaplen(), false); err != nil {
			return err
		}
	case path != "":
		if out, err = capture.Create(path, in.LinkType(), in.Snaplen(), true); err != nil {
			return err
		}
	}
	sink, closeEvents, err := openEvents(c.String("events"), nil)
	if err != nil {
		return err
	}
	ev := expect.New(cfg.Expect)
	sinks := events.Tee{ev}
	if sink != nil {
		sinks = append(sinks, sink)
	}
	var col *collector
	if c.Bool("ladder") {
		col = newCollector()
		sinks = append(sinks, col)
	}

	set := rules.Compile(cfg.Rules)
	p := pipeline.New(cfg.Tracker, set, cfg.Seed, sinks)
	counts, runErr := replay.Run(in, out, p, rec.tap(0))
	if out != nil {
		if err := out.Close(); err != nil && runErr == nil {
			runErr = err
		}
	}
	if err := rec.close(); err != nil && runErr == nil {
		runErr = err
	}
	if err := closeEvents(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return runErr
	}
	summaryTo := c.App.Writer
	if c.String("events") == "-" {
		summaryTo = c.App.ErrWriter
	}
	if col != nil {
		ladder.Write(summaryTo, col.Events(), ladder.Options{})
		fmt.Fprintln(summaryTo)
	}
	fmt.Fprintf(summaryTo, "replayed %s: %d frames, %d TCP, %d passed through", c.String("pcap"), counts.Frames, counts.TCP, counts.Passed)
	if out != nil {
		fmt.Fprintf(summaryTo, ", %d written to %s", counts.Written, c.String("out"))
	}
	if counts.CopiesSkipped > 0 {
		fmt.Fprintf(summaryTo, ", %d copies of duplicated frames skipped (frames cut at the capture's snaplen)", counts.CopiesSkipped)
	}
	fmt.Fprintln(summaryTo)
	rec.report(summaryTo)
	writeSummary(summaryTo, p.Summary())
	return finishExpectations(c, ev, expect.Run{Command: "replay", Config: c.String("config"), Input: c.String("pcap"), Seed: cfg.Seed}, p.Summary())
}

// openEvents opens the event stream: JSON lines to path ("-" for stdout),
// or, without a path, fallback (which may be nil: no events). The returned
// function flushes and closes it and reports the first write error.
func openEvents(path string, fallback events.Writer) (events.Writer, func() error, error) {
	switch path {
	case "":
		return fallback, func() error { return nil }, nil
	case "-":
		j := events.NewJSONLines(os.Stdout)
		return j, j.Flush, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("create events file: %w", err)
	}
	j := events.NewJSONLines(f)
	return j, func() error {
		if err := j.Flush(); err != nil {
			f.Close()
			return fmt.Errorf("write events %s: %w", path, err)
		}
		return f.Close()
	}, nil
}
