package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// port is the server port the configs intercept.
const port = 8080

// scenario is one test's topology with tcpchaos running on the router and
// tcpdump on both router interfaces. For a packet from the client,
// toClient is upstream of the fault and toServer downstream; for a packet
// from the server it is the other way round.
type scenario struct {
	t                  *testing.T
	tp                 *netlabtest.Topology
	client, server     netip.Addr
	serverAP           netip.AddrPort
	toClient, toServer *netlabtest.Capture
	chaos              *tcpchaos
	report             string // the run's --report file
	// accepted counts the connections the server application accepted.
	accepted *atomic.Int64
	// failing names the config's expectations that the test makes fail
	// (a variant past the scenario's documented bound); all others hold.
	failing map[string]bool
}

// families runs fn as parallel subtests "v4" and "v6".
func families(t *testing.T, fn func(t *testing.T, v6 bool)) {
	for _, v6 := range []bool{false, true} {
		name := "v4"
		if v6 {
			name = "v6"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, v6)
		})
	}
}

// newScenario builds a topology, starts the captures (every TCP packet)
// and then tcpchaos on the router with configs/<config>.
func newScenario(t *testing.T, config string, v6 bool) *scenario {
	t.Helper()
	return newScenarioWith(t, configPath(config), v6)
}

// newScenarioWith is newScenario with the config file path and extra
// flags of `tcpchaos run`.
func newScenarioWith(t *testing.T, path string, v6 bool, extra ...string) *scenario {
	t.Helper()
	s := newTopologyScenario(t, v6)
	s.start(path, extra...)
	return s
}

// newTopologyScenario builds the scenario's topology only: traffic flows
// untouched and uncaptured until start.
func newTopologyScenario(t *testing.T, v6 bool) *scenario {
	t.Helper()
	tp := netlabtest.NewTopology(t)
	s := &scenario{t: t, tp: tp, client: tp.Client4, server: tp.Server4}
	if v6 {
		s.client, s.server = tp.Client6, tp.Server6
	}
	s.serverAP = netip.AddrPortFrom(s.server, port)
	return s
}

// start starts the captures (every TCP packet) and then tcpchaos on the
// router with the config file path and extra flags of `tcpchaos run`.
func (s *scenario) start(path string, extra ...string) {
	s.t.Helper()
	s.toClient = s.tp.Router.Capture(s.t, s.tp.RouterClientIf, "tcp")
	s.toServer = s.tp.Router.Capture(s.t, s.tp.RouterServerIf, "tcp")
	s.report = filepath.Join(s.t.TempDir(), "report.json")
	s.chaos = startTcpchaos(s.t, s.tp.Router, path, append([]string{"--report", s.report}, extra...)...)
}

// configVariant writes configs/<config> with old replaced by repl to a
// temporary file and returns its path: a test runs a ready scenario with a
// shorter bound or another limit than the documented one.
func configVariant(t *testing.T, config, old, repl string) string {
	t.Helper()
	data, err := os.ReadFile(configPath(config))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%s has no %q to replace", config, old)
	}
	path := filepath.Join(t.TempDir(), config)
	if err := os.WriteFile(path, bytes.ReplaceAll(data, []byte(old), []byte(repl)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// finish stops the captures, then tcpchaos (checking a clean exit), and
// returns both sides' packets and the events. Call it once every packet
// the test waits for has crossed the router.
func (s *scenario) finish() (toClient, toServer []netlabtest.Packet, evs []events.Event) {
	s.t.Helper()
	toClient, toServer = s.toClient.Stop(), s.toServer.Stop()
	evs = s.chaos.stop()
	s.t.Logf("to-client:\n%s\nto-server:\n%s\nevents:\n%s", dump(toClient), dump(toServer), dumpEvents(evs))
	s.wantExpectationsHold()
	return toClient, toServer, evs
}

// wantExpectationsHold reads the run's report: the config states what it
// reproduces as expectations, and every one of them held (but those in
// s.failing, which failed).
func (s *scenario) wantExpectationsHold() {
	s.t.Helper()
	rep := readReport(s.t, s.report)
	if len(rep.Expectations) == 0 {
		s.t.Errorf("the report lists no expectations: the config states none")
	}
	for _, e := range rep.Expectations {
		if e.Holds == s.failing[e.Name] {
			s.t.Errorf("expectation %s (%s): holds %v, want %v: %s; counter-examples %+v", e.Name, e.Text, e.Holds, !e.Holds, e.Figure, e.CounterExamples)
		}
	}
	if rep.Passed != (len(s.failing) == 0) {
		s.t.Errorf("report: passed %v with expectations %v meant to fail", rep.Passed, s.failing)
	}
}

// listen opens the scenario's server socket and serves every connection
// with handle on a goroutine of its own; the handlers' errors fail the
// test. The test's cleanup closes the listener and waits for them.
func (s *scenario) listen(handle func(net.Conn) error) {
	s.accepted = serve(s.t, s.tp.Server.Listen(s.t, "tcp", s.serverAP.String()), handle)
}

// serve serves ln's connections with handle (netlabtest.Serve, with the
// tests' I/O timeout).
func serve(t *testing.T, ln net.Listener, handle func(net.Conn) error) *atomic.Int64 {
	return netlabtest.Serve(t, ln, ioTimeout, handle)
}

// dial connects from the client namespace to the scenario's server and
// returns the connection and how long connect() took.
func (s *scenario) dial() (net.Conn, time.Duration) {
	s.t.Helper()
	start := time.Now()
	c, err := s.tp.Client.Dial("tcp", s.serverAP.String(), ioTimeout)
	took := time.Since(start)
	if err != nil {
		s.t.Fatalf("dial %s after %v: %v", s.serverAP, took, err)
	}
	s.t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		s.t.Fatalf("set deadline: %v", err)
	}
	return c, took
}

// pingPongOnce serves with pingPong(0), dials, sends one request, closes
// and waits for the close to cross the router, then finishes: it returns
// how long connect() took and what finish returns.
func (s *scenario) pingPongOnce() (took time.Duration, toClient, toServer []netlabtest.Packet, evs []events.Event) {
	s.t.Helper()
	s.listen(pingPong(0))
	c, took := s.dial()
	request(s.t, c)
	c.Close()
	s.waitClosed()
	toClient, toServer, evs = s.finish()
	return took, toClient, toServer, evs
}

// pingPong answers each "ping\n" with "pong\n" until EOF (the client's
// close), then waits linger and closes: a passive closer.
func pingPong(linger time.Duration) func(net.Conn) error {
	return func(c net.Conn) error {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err == io.EOF && line == "" {
				time.Sleep(linger)
				return nil
			}
			if err != nil || line != "ping\n" {
				return fmt.Errorf("read request: %q, %v", line, err)
			}
			if _, err := io.WriteString(c, "pong\n"); err != nil {
				return fmt.Errorf("write response: %w", err)
			}
		}
	}
}

// request sends "ping\n" on c and expects "pong\n" back.
func request(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatalf("write request: %v", err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "pong\n" {
		t.Fatalf("read response: %q, %v", line, err)
	}
}

// waitState polls ss in ns until a socket on the scenario's port is in
// state, and reports whether one was seen before timeout.
func waitState(t *testing.T, ns *netlabtest.NS, state statetrack.State, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ns.SocketStates(t, port)[state] > 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// faults returns the events in which a rule acted.
func faults(evs []events.Event) []events.Event {
	var out []events.Event
	for _, e := range evs {
		if e.Rule != "" {
			out = append(out, e)
		}
	}
	return out
}

// packetEvents returns the packet events of one kind from one sender.
func packetEvents(evs []events.Event, kind statetrack.Kind, from statetrack.Side) []events.Event {
	var out []events.Event
	for _, e := range evs {
		if e.Kind == kind && e.From == from {
			out = append(out, e)
		}
	}
	return out
}

// either stands for both senders in wantFaults.
const either statetrack.Side = 2

// wantFaults checks that a rule acted n times, each time named rule, with
// action, on the nth packet of kind from the sender (or either), and
// returns those events.
func wantFaults(t *testing.T, evs []events.Event, n int, rule string, action rules.ActionType, kind statetrack.Kind, from statetrack.Side, nth uint32) []events.Event {
	t.Helper()
	f := faults(evs)
	if len(f) != n {
		t.Fatalf("%d fault events, want %d:\n%s", len(f), n, dumpEvents(evs))
	}
	for _, e := range f {
		if e.Rule != rule || e.Action != action || e.Kind != kind || (from != either && e.From != from) || e.Nth != nth {
			want := from.String()
			if from == either {
				want = "either"
			}
			t.Errorf("fault = rule %s %s %s from %s nth %d, want rule %s %s %s from %s nth %d",
				e.Rule, e.Action, e.Kind, e.From, e.Nth, rule, action, kind, want, nth)
		}
	}
	return f
}

// wantLostOnce checks that the sender's packets of kind are exactly two in
// the events: the original, which a rule dropped, and its retransmission
// (nth 2), which passed.
func wantLostOnce(t *testing.T, evs []events.Event, kind statetrack.Kind, from statetrack.Side) {
	t.Helper()
	if e := packetEvents(evs, kind, from); len(e) != 2 || e[1].Nth != 2 || e[1].Rule != "" {
		t.Errorf("want %s nth 1 dropped then nth 2 passed, got:\n%s", kind, dumpEvents(e))
	}
}

// wantFault is wantFaults for a single fault.
func wantFault(t *testing.T, evs []events.Event, rule string, action rules.ActionType, kind statetrack.Kind, from statetrack.Side, nth uint32) events.Event {
	t.Helper()
	return wantFaults(t, evs, 1, rule, action, kind, from, nth)[0]
}

// waitFor waits until cond holds for c's packets, failing the test with
// what was captured when it does not.
func waitFor(t *testing.T, c *netlabtest.Capture, what string, cond func([]netlabtest.Packet) bool) {
	t.Helper()
	if !c.WaitFor(ioTimeout, cond) {
		t.Fatalf("timed out waiting for %s; captured:\n%s", what, dump(c.Packets()))
	}
}

// waitClosed waits until the close of the connection crossed the router:
// a FIN from each side and, after them, the last ACK, on both interfaces.
func (s *scenario) waitClosed() {
	s.t.Helper()
	closed := func(pkts []netlabtest.Packet) bool {
		fc, fs := pick(pkts, from(s.client), isFin), pick(pkts, from(s.server), isFin)
		if len(fc) == 0 || len(fs) == 0 {
			return false
		}
		last := fc[0]
		if fs[0].Time.After(last.Time) {
			last = fs[0]
		}
		acked := uint32(last.Seq) + last.Len + 1
		return count(pkts, from(last.Dst.Addr()), isPureAck, ackOf(acked)) > 0
	}
	waitFor(s.t, s.toClient, "the close on the client side", closed)
	waitFor(s.t, s.toServer, "the close on the server side", closed)
}
