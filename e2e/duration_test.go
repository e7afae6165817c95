package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestDurationReleasesHeldPackets: `run --duration 2s` with every SYN-ACK
// held for 30 s ends by itself at 2 s, and the SYN-ACKs it still holds are
// released then, not lost: connect() completes at about 2 s instead of 30,
// the run exits 0 with its summary (nothing left held) and removes its rules.
func TestDurationReleasesHeldPackets(t *testing.T) {
	t.Parallel()
	tp := netlabtest.NewTopology(t)
	cfg := filepath.Join(t.TempDir(), "hold.yaml")
	if err := os.WriteFile(cfg, []byte("intercept: {ports: [8080]}\nrules:\n  - name: hold-syn-ack\n    match: {packet: syn-ack}\n    action: {delay: 30s}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	serve(t, tp.Server.Listen(t, "tcp", "198.19.2.2:8080"), pingPong(0))
	start := time.Now()
	tc := startTcpchaos(t, tp.Router, cfg, "--duration", "2s")

	c, err := tp.Client.Dial("tcp", "198.19.2.2:8080", ioTimeout)
	if err != nil {
		t.Fatalf("dial: %v (the held SYN-ACK was not released when the run ended)", err)
	}
	within(t, "connect() from the start of the run", time.Since(start), 1500*time.Millisecond, 8*time.Second)
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	request(t, c)
	c.Close()

	select {
	case <-tc.exited:
	case <-time.After(stopTimeout):
		t.Fatalf("tcpchaos still running %v after a 2s --duration", stopTimeout)
	}
	if tc.err != nil {
		t.Errorf("tcpchaos exit: %v, want 0\nstderr:\n%s", tc.err, tc.stderr.String())
	}
	out := tc.stdout.String()
	for _, want := range []string{"hold-syn-ack", "(0 still held)"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if left := chainsIn(t, tp.Router); left != "" {
		t.Errorf("rules left after --duration:\n%s", left)
	}
	evs := readEvents(t, tc.events)
	f := faults(evs)
	if len(f) == 0 {
		t.Fatalf("no fault events:\n%s", dumpEvents(evs))
	}
	for _, e := range f {
		if e.Rule != "hold-syn-ack" || e.Action != rules.Delay || e.Kind != statetrack.SynAck || e.Delay != 30*time.Second {
			t.Errorf("fault %+v, want syn-ack delayed 30s by hold-syn-ack", e)
		}
	}
	released := 0
	for _, e := range evs {
		if e.IsState() && e.Reason == events.Released {
			released++
		}
	}
	if released == 0 {
		t.Errorf("no release event: the held SYN-ACK's delivery was not reported\n%s", dumpEvents(evs))
	}
}
