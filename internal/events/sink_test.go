package events

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, bytes.ErrTooLarge
}

func TestJSONLinesKeepsTheFirstError(t *testing.T) {
	w := &failingWriter{}
	j := NewJSONLines(w)
	j.Emit(Event{})
	j.Emit(Event{})
	if j.Flush() == nil || w.n != 1 {
		t.Errorf("err = %v after %d writes, want the first error and no further writes", j.Flush(), w.n)
	}
	j.Emit(Event{})
	if j.Flush() == nil || w.n != 1 {
		t.Errorf("err = %v after %d writes, want the first error and no further writes", j.Flush(), w.n)
	}
}

func TestFaultsPrintsOnlyFaults(t *testing.T) {
	var b bytes.Buffer
	f := NewFaults(&b)
	Tee{f}.Emit(Event{Kind: statetrack.Syn, From: statetrack.Client})
	f.Emit(Event{Time: time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC), Kind: statetrack.SynAck, From: statetrack.Server, Nth: 1,
		Flags: statetrack.SYN | statetrack.ACK, Rule: "slow", Action: rules.Delay, Delay: 300 * time.Millisecond,
		ClientState: statetrack.SynSent, ServerState: statetrack.SynRcvd})
	f.Emit(Event{Kind: statetrack.Syn, From: statetrack.Client, Nth: 1, Flags: statetrack.SYN, Rule: "dup", Action: rules.Duplicate,
		Copies: 2, After: 3 * time.Second})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2 (faults only):\n%s", len(lines), b.String())
	}
	for _, want := range []string{"delay", "by 300ms", "server syn-ack #1 [S.]", "rule=slow", "client SYN_SENT"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line %q lacks %q", lines[0], want)
		}
	}
	if !strings.Contains(lines[1], "×2 after 3s") {
		t.Errorf("line %q lacks the copies", lines[1])
	}
}

type flushCounter struct {
	Sink
	flushes int
}

func (f *flushCounter) Flush() error { f.flushes++; return nil }

func TestTeeFlushesEveryWriter(t *testing.T) {
	var b bytes.Buffer
	j, fc := NewJSONLines(&b), &flushCounter{Sink: NewFaults(&b)}
	tee := Tee{j, fc}
	tee.Emit(Event{})
	if b.Len() != 0 {
		t.Fatalf("JSONLines wrote before Flush: %q", b.String())
	}
	if err := tee.Flush(); err != nil || fc.flushes != 1 || !strings.HasSuffix(b.String(), "}\n") {
		t.Errorf("Flush = %v, %d flushes, wrote %q; want the line out and every writer flushed", err, fc.flushes, b.String())
	}
	failing := Tee{NewJSONLines(&failingWriter{}), fc}
	failing.Emit(Event{})
	if err := failing.Flush(); err == nil || fc.flushes != 2 {
		t.Errorf("Flush = %v with %d flushes, want the failing writer's error and the other flushed", err, fc.flushes)
	}
}

// BenchmarkJSONLines measures the writer goroutine's work per event:
// encoding one line (to io.Discard).
func BenchmarkJSONLines(b *testing.B) {
	j := NewJSONLines(io.Discard)
	evs := sampleEvents()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		j.Emit(evs[i%len(evs)])
		i++
	}
}
