package expect

import (
	"fmt"
	"io"
)

// TimeFormat is how the outcome lines write times (as the fault lines of
// `tcpchaos run` do).
const TimeFormat = "15:04:05.000000"

// WriteLines prints one line per outcome: its name, holds / FAILS /
// skipped, the measured figure and, for a failure, the first
// counter-example's connection and time.
func WriteLines(w io.Writer, os []Outcome) {
	for _, o := range os {
		verdict := "holds"
		switch {
		case o.Skipped != "":
			verdict = "skipped"
		case !o.Holds:
			verdict = "FAILS"
		}
		fmt.Fprintf(w, "expect %s: %s: %s", o.Name, verdict, o.Figure)
		if !o.Holds && len(o.CounterExamples) > 0 {
			ce := o.CounterExamples[0]
			fmt.Fprintf(w, "; first counter-example %s at %s: %s", ce.Conn, ce.At.Format(TimeFormat), ce.What)
			if o.Failures > 1 {
				fmt.Fprintf(w, " (%d counter-examples)", o.Failures)
			}
		}
		if o.EventsLost > 0 {
			fmt.Fprintf(w, " (evaluated without %d lost events)", o.EventsLost)
		}
		fmt.Fprintln(w)
	}
}
