package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/internal/oracle"
)

// The CI size of the conntrack comparison (the benchmark suite runs it at
// 10,000 connections: go run ./bench -oracle-only).
const (
	ctConns   = 300
	ctWorkers = 8
)

// TestConntrackAgrees: the tracker against nf_conntrack, the kernel's own
// middlebox tracker, on the same router (internal/oracle). A few hundred
// connections of every shape of oracle.Shape, lost packets included (the
// rules of oracle.Config); conntrack's event stream (conntrack -E) and the
// tracker's events must tell the same story of every connection, but for
// conntrack's documented coarseness (oracle.Class).
//
// When conntrack -E reports that it lost events (oracle.ErrLostEvents) the
// comparison would be blind; the measurement is repeated once, in a fresh
// topology.
func TestConntrackAgrees(t *testing.T) {
	t.Parallel()
	requireTools(t, "conntrack")
	const attempts = 2
	for attempt := 1; ; attempt++ {
		evs, cts, err := measureConntrack(t)
		if errors.Is(err, oracle.ErrLostEvents) && attempt < attempts {
			t.Logf("attempt %d: %v; measuring again", attempt, err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		checkConntrack(t, evs, cts)
		return
	}
}

// measureConntrack runs the workload once in a topology of its own and
// returns both trackers' events.
func measureConntrack(t *testing.T) ([]events.Event, []oracle.CTEvent, error) {
	tp := netlabtest.NewTopology(t)
	run := tp.Router.Command
	if err := oracle.PrepareRouter(run); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "oracle.yaml")
	if err := os.WriteFile(config, []byte(oracle.Config(oracle.CTMSL)), 0o644); err != nil {
		t.Fatal(err)
	}
	mon, err := oracle.StartMonitor(run, filepath.Join(t.TempDir(), "conntrack.txt"))
	if err != nil {
		t.Fatal(err)
	}
	chaos := startTcpchaos(t, tp.Router, config)
	stop, err := oracle.Serve(tp.Server.NS.Listen, tp.Server4, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := oracle.Run(t.Context(), tp.Client.DialContext, tp.Server4, ctConns, ctWorkers, ioTimeout)
	t.Logf("%d connections in %v", ctConns, time.Since(start).Round(time.Millisecond))
	stop()
	if ok, failed := res.Total(); ok != ctConns || failed != 0 {
		t.Errorf("%d connections completed, %d failed, want %d and 0: %s", ok, failed, ctConns, strings.Join(res.Errors, "; "))
	}
	// Both trackers' TIME_WAIT ends 2 s after the last packet; the
	// tracker reaps once a second.
	time.Sleep(2*oracle.CTMSL + 1500*time.Millisecond)
	if left, err := mon.Drain(ioTimeout); err != nil || left > 0 {
		t.Errorf("conntrack: %d entries left after reaping, %v", left, err)
	}
	evs := chaos.stop()
	cts, err := mon.Stop()
	return evs, cts, err
}

// checkConntrack compares the trackers' events: every connection of the
// workload, no disagreement but coarseness, no impossible pair of states.
func checkConntrack(t *testing.T, evs []events.Event, cts []oracle.CTEvent) {
	t.Helper()
	vs := oracle.Compare(evs, cts)
	s := oracle.Summarize(vs)
	t.Logf("%d conntrack events, %d tracker events\n%s\n%s", len(cts), len(evs), s.Table(), s.Legend())
	bad := 0
	for _, v := range vs {
		if !v.Class.Coarse() {
			if bad < 10 {
				t.Errorf("%s\n%s", v, dumpEvents(connEvents(evs, v.Conn)))
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d connections on which the trackers disagree", bad)
	}
	if len(vs) != ctConns {
		t.Errorf("%d connections compared, want %d", len(vs), ctConns)
	}
	if imp := oracle.ImpossiblePairs(evs); len(imp) > 0 {
		t.Errorf("%d events show an impossible pair of states, the first: %s", len(imp), imp[0])
	}
}

// connEvents returns the events of one connection.
func connEvents(evs []events.Event, conn string) []events.Event {
	var out []events.Event
	for _, e := range evs {
		if e.Conn() == conn {
			out = append(out, e)
		}
	}
	return out
}
