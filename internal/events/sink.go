package events

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Sink receives events. The packet path passes them by value, so that an
// event costs no allocation there.
type Sink interface {
	Emit(e Event)
}

// Writer is a sink that may keep what it is given in a buffer until Flush:
// what an Async writes to.
type Writer interface {
	Sink
	// Flush writes out what is buffered and returns the first write
	// error, if any.
	Flush() error
}

// JSONLines writes each event as one JSON object per line, buffered. It is
// not safe for concurrent use: an Async serializes the queues' events.
type JSONLines struct {
	w    *bufio.Writer
	line []byte // reused for each line
	err  error
}

// NewJSONLines returns a sink writing JSON lines to w.
func NewJSONLines(w io.Writer) *JSONLines { return &JSONLines{w: bufio.NewWriter(w)} }

// Emit writes e. After the first write error, which Flush reports, events
// are dropped.
func (j *JSONLines) Emit(e Event) {
	if j.err == nil {
		j.line = append(appendJSON(j.line[:0], &e), '\n')
		_, j.err = j.w.Write(j.line)
	}
}

// Flush writes out the buffered lines and returns the first write error,
// if any.
func (j *JSONLines) Flush() error {
	if j.err == nil {
		j.err = j.w.Flush()
	}
	return j.err
}

// Faults writes one readable line per fault (events in which a rule
// acted) and ignores the rest: what `run` prints on stderr without
// --events. It writes each line at once and is not safe for concurrent
// use.
type Faults struct {
	w io.Writer
}

// NewFaults returns a sink writing fault lines to w.
func NewFaults(w io.Writer) *Faults { return &Faults{w: w} }

// Emit writes a line for e if a rule acted on it.
func (f *Faults) Emit(e Event) {
	if e.Rule == "" {
		return
	}
	if e.Reason == Healed {
		fmt.Fprintf(f.w, "%s healed    %s  rule=%s  (client %s, server %s)\n",
			e.Time.Format("15:04:05.000000"), e.Dark.Direction(), e.Rule, e.ClientState, e.ServerState)
		return
	}
	detail := ""
	switch {
	case e.Dark != 0:
		detail = " " + e.Dark.Direction()
	case e.Action.Holds():
		detail = " by " + e.Delay.String()
	case e.Copies > 0:
		detail = fmt.Sprintf(" ×%d after %s", e.Copies, e.After)
	}
	fmt.Fprintf(f.w, "%s %-9s%s %s %s #%d [%s] seq=%d ack=%d  rule=%s  (client %s, server %s)\n",
		e.Time.Format("15:04:05.000000"), e.Action, detail, e.From, e.Kind, e.Nth, e.Flags, e.Seq, e.Ack,
		e.Rule, e.ClientState, e.ServerState)
}

// Flush does nothing: Emit buffers nothing.
func (f *Faults) Flush() error { return nil }

// Tee sends every event to each of its writers in order.
type Tee []Writer

// Emit passes e to every writer.
func (t Tee) Emit(e Event) {
	for _, w := range t {
		w.Emit(e)
	}
}

// Flush flushes every writer and returns their errors.
func (t Tee) Flush() error {
	var errs []error
	for _, w := range t {
		errs = append(errs, w.Flush())
	}
	return errors.Join(errs...)
}
