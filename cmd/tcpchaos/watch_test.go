//go:build linux

package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/metrics"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/nfq"
)

// TestRunMetricsAddressRefused: a bad --metrics address is a usage error
// (exit 2), a port in use a failure (exit 1); both before anything is
// installed (the run needs no privilege to get there).
func TestRunMetricsAddressRefused(t *testing.T) {
	cfg := "../../configs/lost-first-syn.yaml"
	out, err := runCLI(t, "run", "-c", cfg, "--metrics", "9464")
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "--metrics") || !strings.Contains(err.Error(), "bare port binds loopback") {
		t.Errorf("--metrics 9464: exit %d, %v\n%s; want exit 2 naming the flag and the form", exitCode(err), err, out)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	out, err = runCLI(t, "run", "-c", cfg, "--metrics", busy.Addr().String())
	if exitCode(err) != exitFailure || !strings.Contains(err.Error(), "address already in use") || strings.Contains(out, "intercepting") {
		t.Errorf("--metrics on a port in use: exit %d, %v\n%s; want exit 1, address already in use, nothing intercepted", exitCode(err), err, out)
	}
}

func TestStatusText(t *testing.T) {
	q := func(tracked int, hits uint64, held int64) metrics.Queue {
		return metrics.Queue{
			Summary: pipeline.Summary{Tracked: tracked, Rules: []pipeline.RuleHits{{Name: "lose-first-syn", Hits: hits}, {Name: "slow", Hits: 0}}},
			Stats:   nfq.Stats{Held: held},
		}
	}
	got := statusText(12340*time.Millisecond, 30*time.Second, []metrics.Queue{q(2, 1, 0), q(3, 2, 1)})
	if want := "tcpchaos: 12.3s / 30s | 5 tracked | faults: lose-first-syn 3, slow 0 | 1 held"; got != want {
		t.Errorf("status %q, want %q", got, want)
	}
	got = statusText(time.Second, 0, []metrics.Queue{{}})
	if want := "tcpchaos: 1s | 0 tracked | faults: no rules | 0 held"; got != want {
		t.Errorf("status %q, want %q", got, want)
	}
}
