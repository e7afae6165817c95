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
// conntrack's documented coarseness and what the quiet close leaves unseen
// (oracle.Class.Explained).
//
// When conntrack -E reports that it lost events (oracle.ErrLostEvents) the
// comparison would be blind; the measurement is repeated once, in a fresh
// topology.
func TestConntrackAgrees(t *testing.T) {
	t.Parallel()
	checkConntrack(t, measureConntrackOnce(t, ""))
}

// staleSYNConfig holds the lost-syn-ack shape's SYN retransmission 30 ms
// in the client's own namespace (a tcpchaos in local mode there), so that
// it reaches the router after its whole connection: the stale SYN that
// two CPUs now and then make of it in the wild (statetrack's doc).
const staleSYNConfig = `intercept:
  mode: local
  ports: [8086]
rules:
  - name: stale-syn
    match: {packet: syn, from: client, nth: 2, port: 8086}
    action: {delay: 30ms}
`

// TestConntrackStaleSYN: the comparison of TestConntrackAgrees with every
// lost-syn-ack connection's SYN retransmission arriving after the close.
// The server, with no socket left, takes it for a new connection; the
// client's TIME_WAIT, then the client without a socket, answer its
// SYN-ACKs; conntrack and the tracker must both end that incarnation.
func TestConntrackStaleSYN(t *testing.T) {
	t.Parallel()
	m := measureConntrackOnce(t, staleSYNConfig)
	checkConntrack(t, m)
	stale := 0
	for _, v := range oracle.Compare(m.evs, m.cts, m.quietClose) {
		if v.Shape == oracle.LostSynAck {
			stale++
		}
	}
	// 300 connections have 9 of the shape; each held SYN that arrived
	// after the close adds an incarnation.
	if stale -= 9; stale < 1 || m.held < 1 {
		t.Errorf("%d SYNs held, %d stale-SYN incarnations, want at least 1 each", m.held, stale)
	}
	t.Logf("%d SYNs held, %d stale-SYN incarnations", m.held, stale)
}

// measured is one run of the conntrack workload: both trackers' events,
// how many SYNs the client-side tcpchaos held, and whether the router's
// tcpchaos had the quiet close in force (its status line says so).
type measured struct {
	evs        []events.Event
	cts        []oracle.CTEvent
	held       int
	quietClose bool
}

// measureConntrackOnce runs the workload (measureConntrack), once more in
// a fresh topology when conntrack -E reports that it lost events
// (oracle.ErrLostEvents): the comparison would be blind.
func measureConntrackOnce(t *testing.T, clientConfig string) measured {
	t.Helper()
	requireTools(t, "conntrack")
	const attempts = 2
	for attempt := 1; ; attempt++ {
		m, err := measureConntrack(t, clientConfig)
		if errors.Is(err, oracle.ErrLostEvents) && attempt < attempts {
			t.Logf("attempt %d: %v; measuring again", attempt, err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
}

// measureConntrack runs the workload once in a topology of its own, with
// a tcpchaos in the client's namespace too when clientConfig is not empty.
func measureConntrack(t *testing.T, clientConfig string) (measured, error) {
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
	var client *tcpchaos
	if clientConfig != "" {
		local := filepath.Join(t.TempDir(), "client.yaml")
		if err := os.WriteFile(local, []byte(clientConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		client = startTcpchaos(t, tp.Client, local)
	}
	stop, err := oracle.Serve(tp.Server.NS.Listen, tp.Server4, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := oracle.Run(t.Context(), tp.Client.DialContext, tp.Server4, ctConns, ctWorkers, ioTimeout)
	t.Logf("%d connections in %v", ctConns, time.Since(start).Round(time.Millisecond))
	if ok, failed := res.Total(); ok != ctConns || failed != 0 {
		t.Errorf("%d connections completed, %d failed, want %d and 0: %s", ok, failed, ctConns, strings.Join(res.Errors, "; "))
	}
	time.Sleep(oracle.Settle)
	stop()
	if left, err := mon.Drain(ioTimeout); err != nil || left > 0 {
		t.Errorf("conntrack: %d entries left after reaping, %v", left, err)
	}
	// oracle.Config's rules leave both quiet phases on: the comparison
	// must see what they leave unseen.
	m := measured{quietClose: strings.Contains(chaos.stderr.String(), "(quiet close)")}
	if !m.quietClose || !strings.Contains(chaos.stderr.String(), "(quiet handshake)") {
		t.Errorf("the oracle's tcpchaos runs without the quiet handshake or close:\n%s", chaos.stderr.String())
	}
	if client != nil {
		for _, e := range client.stop() {
			if e.Rule != "" {
				m.held++
			}
		}
	}
	m.evs = chaos.stop()
	m.cts, err = mon.Stop()
	return m, err
}

// checkConntrack compares the trackers' events: every connection of the
// workload, no disagreement (oracle.Class.Explained), no impossible pair
// of states.
func checkConntrack(t *testing.T, m measured) {
	t.Helper()
	evs, cts := m.evs, m.cts
	vs := oracle.Compare(evs, cts, m.quietClose)
	s := oracle.Summarize(vs)
	t.Logf("%d conntrack events, %d tracker events\n%s\n%s", len(cts), len(evs), s.Table(), s.Legend())
	bad := 0
	for _, v := range vs {
		if !v.Class.Explained() {
			if bad < 10 {
				t.Errorf("%s\n%s", v, dumpEvents(connEvents(evs, v.Conn)))
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d connections on which the trackers disagree", bad)
	}
	// A stale SYN adds an incarnation (see oracle.Settle).
	if len(vs) < ctConns {
		t.Errorf("%d connections compared, want at least %d", len(vs), ctConns)
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
