package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/tcpchaos/tcpchaos/internal/expect"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
)

// expectFlags are the flags of the commands that evaluate expectations.
func expectFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "report", Usage: "write the outcome as JSON to `FILE` (README \"Reports\")"},
		&cli.StringFlag{Name: "junit", Usage: "write the expectations as JUnit XML to `FILE`, one test case each"},
	}
}

// expectHelp is the part of a command's description about expectations.
const expectHelp = "After the summary, one line per expect: item of the config says whether it holds,\n" +
	"with the measured figure and the first counter-example. Exit status: 0 when every\n" +
	"expectation holds, 3 when one fails, 1 when the run failed, 2 for bad flags or config."

// failedError is the error of a run whose expectations did not all hold
// (exit status 3).
type failedError struct{ failed, of int }

func (e failedError) Error() string {
	return fmt.Sprintf("%d of %d expectations failed", e.failed, e.of)
}

// finishExpectations ends ev's evaluation, prints one line per outcome to
// the summary writer w, writes --report and --junit, and returns a
// failedError when an expectation failed.
func finishExpectations(c *cli.Context, ev *expect.Evaluator, run expect.Run, s pipeline.Summary) error {
	outs := ev.End(run.End, ruleHits(s))
	w := c.App.Writer
	if c.String("events") == "-" {
		w = c.App.ErrWriter
	}
	expect.WriteLines(w, outs)
	if run.Start.IsZero() || run.End.IsZero() {
		run.Start, run.End = ev.Span()
	}
	run.Version = buildVersion()
	r := expect.NewReport(run, s, outs)
	if err := writeReport(c.String("report"), r.WriteJSON); err != nil {
		return err
	}
	if err := writeReport(c.String("junit"), r.WriteJUnit); err != nil {
		return err
	}
	failed := 0
	for _, o := range outs {
		if !o.Holds {
			failed++
		}
	}
	if failed > 0 {
		return failedError{failed, len(outs)}
	}
	return nil
}

// ruleHits are the rules' hit counts of a summary, by rule name.
func ruleHits(s pipeline.Summary) map[string]uint64 {
	hits := make(map[string]uint64, len(s.Rules))
	for _, r := range s.Rules {
		hits[r.Name] = r.Hits
	}
	return hits
}

// writeReport writes a report to path with write; no path, no report.
func writeReport(path string, write func(io.Writer) error) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create report: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
