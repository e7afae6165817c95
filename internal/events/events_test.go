package events

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestJSONFieldNames pins the stable interface: field names and spellings.
func TestJSONFieldNames(t *testing.T) {
	var b bytes.Buffer
	j := NewJSONLines(&b)
	j.Emit(&Event{
		Time: time.Date(2026, 11, 21, 12, 0, 0, 123456789, time.UTC), Conn: "[fd00:1::2]:40312->[fd00:2::2]:8080", ConnID: 7,
		From: "client", Kind: "final-ack", Nth: 2, Retransmission: true, Seq: 1, Ack: 2, Flags: ".",
		ClientState: "TIME_WAIT", ServerState: "LAST_ACK", Rule: "r", Action: "drop",
	})
	j.Emit(&Event{Kind: StateKind, Reason: "time-wait-expired", ClientState: "CLOSED", ServerState: "CLOSED"})
	if err := j.Err(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := `{"time":"2026-11-21T12:00:00.123456789Z","conn":"[fd00:1::2]:40312->[fd00:2::2]:8080","conn_id":7,"from":"client","kind":"final-ack","nth":2,"retransmission":true,"seq":1,"ack":2,"flags":".","len":0,"client_state":"TIME_WAIT","server_state":"LAST_ACK","rule":"r","action":"drop"}`
	if lines[0] != want {
		t.Errorf("line 1:\n got %s\nwant %s", lines[0], want)
	}
	if !strings.Contains(lines[1], `"kind":"state"`) || !strings.Contains(lines[1], `"reason":"time-wait-expired"`) {
		t.Errorf("line 2 = %s, want a state event with its reason", lines[1])
	}
}

type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, bytes.ErrTooLarge
}

func TestJSONLinesKeepsTheFirstError(t *testing.T) {
	w := &failingWriter{}
	j := NewJSONLines(w)
	j.Emit(&Event{})
	j.Emit(&Event{})
	if j.Err() == nil || w.n != 1 {
		t.Errorf("err = %v after %d writes, want the first error and no further writes", j.Err(), w.n)
	}
}

func TestFaultsPrintsOnlyFaults(t *testing.T) {
	var b bytes.Buffer
	f := NewFaults(&b)
	Tee{f}.Emit(&Event{Kind: "syn", From: "client"})
	f.Emit(&Event{Time: time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC), Kind: "syn-ack", From: "server", Nth: 1, Flags: "S.",
		Rule: "slow", Action: "delay", Delay: "300ms", ClientState: "SYN_SENT", ServerState: "SYN_RCVD"})
	f.Emit(&Event{Kind: "syn", From: "client", Nth: 1, Flags: "S", Rule: "dup", Action: "duplicate", Copies: 2, After: "3s"})
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
