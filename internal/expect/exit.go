package expect

import (
	"fmt"
	"time"
)

// Type returns "exit".
func (x *Exit) Type() string { return "exit" }

// String says what x requires, e.g. "the command's exit status is 28".
func (x *Exit) String() string {
	if x.Nonzero {
		return "the command's exit status is not 0"
	}
	return fmt.Sprintf("the command's exit status is %d", x.Status)
}

func (x *Exit) start() tally { return exitTally{x} }

type exitTally struct{ x *Exit }

func (exitTally) observe(*point, *conn) {}
func (exitTally) gone(*conn, time.Time) {}

func (t exitTally) end(_ time.Time, f facts) Outcome {
	if f.status == nil {
		return Outcome{Holds: true, Skipped: "no command ran", Figure: "no command ran"}
	}
	s := *f.status
	holds := s == t.x.Status && !t.x.Nonzero || s != 0 && t.x.Nonzero
	return Outcome{Holds: holds, Figure: fmt.Sprintf("exit status %d", s), Measured: Measured{Status: &s}}
}
