//go:build linux

package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// findEvent returns the first event of kind number nth sent by from.
func findEvent(evs []events.Event, from statetrack.Side, kind statetrack.Kind, nth uint32) *events.Event {
	for i := range evs {
		if e := &evs[i]; e.From == from && e.Kind == kind && e.Nth == nth {
			return e
		}
	}
	return nil
}

// requireNothingLeft fails the test if a namespace of the demo or a
// tcpchaos chain remains on the host.
func requireNothingLeft(t *testing.T) {
	t.Helper()
	for _, name := range netlabtest.Namespaces(t) {
		if strings.HasPrefix(name, demoPrefix()) {
			t.Errorf("namespace %s of the demo remains", name)
		}
	}
	out, err := exec.Command("iptables-save", "-t", "mangle").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	if strings.Contains(string(out), "TCPCHAOS") {
		t.Errorf("tcpchaos chains remain in the host's mangle table:\n%s", out)
	}
}

func TestDemo(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	var out strings.Builder
	evs, err := runDemo(t.Context(), &out, nil)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("runDemo: %v", err)
	}

	syn1, syn2 := findEvent(evs, statetrack.Client, statetrack.Syn, 1), findEvent(evs, statetrack.Client, statetrack.Syn, 2)
	if syn1 == nil || syn1.Action != rules.Drop || syn1.Rule != "lose-first-syn" {
		t.Errorf("client syn #1 = %+v, want dropped by lose-first-syn", syn1)
	}
	if syn2 == nil || syn2.Rule != "" {
		t.Errorf("client syn #2 = %+v, want accepted", syn2)
	} else if syn1 != nil {
		if d := syn2.Time.Sub(syn1.Time); d < 800*time.Millisecond || d > 3*time.Second {
			t.Errorf("syn #2 came %v after syn #1, want 0.8 s to 3 s (the SYN retransmission timeout)", d)
		}
	}
	if fa := findEvent(evs, statetrack.Client, statetrack.FinalAck, 1); fa == nil || fa.Action != rules.Drop || fa.Rule != "lose-final-ack-once" {
		t.Errorf("client final-ack #1 = %+v, want dropped by lose-final-ack-once", fa)
	}
	if fin := findEvent(evs, statetrack.Server, statetrack.Fin, 2); fin == nil || fin.Rule != "" {
		t.Errorf("server fin #2 (the retransmission) = %+v, want seen and accepted", fin)
	}
	if fa := findEvent(evs, statetrack.Client, statetrack.FinalAck, 2); fa == nil || fa.Rule != "" || fa.ClientState != statetrack.TimeWait {
		t.Errorf("client final-ack #2 = %+v, want accepted, sent from TIME_WAIT", fa)
	}
	for _, want := range []string{"✗ dropped by lose-first-syn", "TIME-WAIT", "the client's kernel sent the SYN again", "removed the namespaces",
		"expect syn-retransmitted: holds: 1 of 1 firings followed", "expect fin-retransmitted: holds", "expect re-acked-from-time-wait: holds"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	requireNothingLeft(t)
}

// sinkFunc adapts a function to events.Writer.
type sinkFunc func(events.Event)

func (f sinkFunc) Emit(e events.Event) { f(e) }

func (f sinkFunc) Flush() error { return nil }

// TestDemoInterrupted cancels the demo while the client waits to retransmit
// its SYN: the demo reports the interruption and leaves nothing behind.
func TestDemoInterrupted(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	interrupt := sinkFunc(func(e events.Event) {
		if e.Kind == statetrack.Syn && e.Rule != "" && e.Action == rules.Drop {
			cancel()
		}
	})
	var out strings.Builder
	start := time.Now()
	_, err := runDemo(ctx, &out, interrupt)
	if err == nil || !strings.Contains(err.Error(), "demo interrupted") {
		t.Errorf("runDemo interrupted = %v, want a \"demo interrupted\" error\n%s", err, out.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("interrupted demo took %v to return, want it prompt", d)
	}
	requireNothingLeft(t)
}
