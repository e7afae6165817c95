package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// unlistedPort is a server port no config intercepts.
const unlistedPort = 9090

// TestUnlistedPortUntouched: with configs/lost-first-syn.yaml (port 8080)
// running, connections to port 9090, IPv4 and IPv6, connect at once and
// cross the router unchanged (the same segments on both sides) and leave
// no event, while a connection to 8080 in the same run loses its first SYN.
func TestUnlistedPortUntouched(t *testing.T) {
	t.Parallel()
	s := newScenario(t, "lost-first-syn.yaml", false)
	s.listen(pingPong(0))
	for _, a := range []netip.Addr{s.tp.Server4, s.tp.Server6} {
		serve(t, s.tp.Server.Listen(t, "tcp", netip.AddrPortFrom(a, unlistedPort).String()), pingPong(0))
	}
	intercepted := make(chan time.Duration, 1)
	go func() {
		c, took := s.dial()
		request(t, c)
		c.Close()
		intercepted <- took
	}()
	for _, a := range []netip.Addr{s.tp.Server4, s.tp.Server6} {
		addr := netip.AddrPortFrom(a, unlistedPort).String()
		start := time.Now()
		c, err := s.tp.Client.Dial("tcp", addr, ioTimeout)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		within(t, "connect() to "+addr, time.Since(start), 0, 500*time.Millisecond)
		if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
		request(t, c)
		c.Close()
	}
	within(t, "connect() to port 8080", <-intercepted, 900*time.Millisecond, 3*time.Second)
	for _, c := range []*netlabtest.Capture{s.toClient, s.toServer} {
		for _, a := range []netip.Addr{s.tp.Server4, s.tp.Server6} {
			waitFor(t, c, "the last ACK to "+a.String()+" on port 9090", func(pkts []netlabtest.Packet) bool {
				pkts = pick(pkts, onPort(unlistedPort))
				fin := pick(pkts, from(a), isFin)
				return len(fin) > 0 && count(pkts, isPureAck, ackOf(uint32(fin[0].Seq)+1)) > 0
			})
		}
	}
	s.waitClosed()
	atClient, atServer, evs := s.finish()

	a, b := pick(atClient, onPort(unlistedPort)), pick(atServer, onPort(unlistedPort))
	if len(a) != len(b) {
		t.Errorf("port %d: %d packets on the client side, %d on the server side, want the same", unlistedPort, len(a), len(b))
	}
	// Each direction in the same order on both sides.
	for _, sender := range []netip.Addr{s.tp.Client4, s.tp.Server4, s.tp.Client6, s.tp.Server6} {
		x, y := pick(a, from(sender)), pick(b, from(sender))
		if !slices.EqualFunc(x, y, func(p, q netlabtest.Packet) bool {
			return p.Src == q.Src && p.Dst == q.Dst && p.Seq == q.Seq && p.Ack == q.Ack && p.Flags == q.Flags && p.Len == q.Len
		}) {
			t.Errorf("port %d: packets from %s differ across the router:\nclient side:\n%s\nserver side:\n%s", unlistedPort, sender, dump(x), dump(y))
		}
	}
	if n := count(a, isSyn); n != 2 {
		t.Errorf("port %d: %d SYNs, want 2 (one per family)", unlistedPort, n)
	}
	for _, e := range evs {
		if strings.HasSuffix(e.Conn(), ":9090") {
			t.Errorf("event for port %d: %+v", unlistedPort, e)
		}
	}
	wantFault(t, evs, "lose-first-syn", rules.Drop, statetrack.Syn, statetrack.Client, 1)
}

// TestInterruptRemovesRules: while `run` intercepts, the router has
// tcpchaos's chains in IPv4 and IPv6 with a fail-open NFQUEUE rule on the
// run's queue; SIGINT makes it exit 0 with a summary (rule hits included)
// and take every chain away.
func TestInterruptRemovesRules(t *testing.T) {
	t.Parallel()
	s := newScenario(t, "lost-first-syn.yaml", true)
	s.listen(pingPong(0))
	queue := s.chaos.cmd.Args[slices.Index(s.chaos.cmd.Args, "--queue")+1]
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out := s.tp.Router.Run(t, cmd, "-t", "mangle")
		if !strings.Contains(out, "-A FORWARD -p tcp -j TCPCHAOS") || !strings.Contains(out, "--queue-num "+queue) || !strings.Contains(out, "--queue-bypass") {
			t.Errorf("%s while running lacks the jump or a fail-open NFQUEUE rule on queue %s:\n%s", cmd, queue, out)
		}
	}
	c, _ := s.dial()
	request(t, c)
	c.Close()
	s.waitClosed()
	s.finish() // SIGINT, exit 0, summary, no chain left
	out := s.chaos.stdout.String()
	if !strings.Contains(out, "lose-first-syn  1") || !strings.Contains(out, "drop 1") {
		t.Errorf("summary does not count the rule's one drop:\n%s", out)
	}
}

// TestKilledRunFailsOpen: after SIGKILL the chains stay, but with nobody
// reading the queue the kernel lets packets through (--queue-bypass): new
// connections, IPv4 and IPv6, connect at once. A second run refuses to
// start over the leftovers (exit 1, pointing at cleanup); `cleanup` removes
// them, and a second cleanup is fine.
func TestKilledRunFailsOpen(t *testing.T) {
	t.Parallel()
	s := newScenario(t, "lost-first-syn.yaml", false)
	s.listen(pingPong(0))
	serve(t, s.tp.Server.Listen(t, "tcp", netip.AddrPortFrom(s.tp.Server6, port).String()), pingPong(0))
	if code := s.chaos.signal(syscall.SIGKILL); code != -1 {
		t.Errorf("exit code after SIGKILL = %d, want -1 (killed)", code)
	}
	left := chainsIn(t, s.tp.Router)
	for _, want := range []string{"iptables-save: -A FORWARD -p tcp -j TCPCHAOS", "ip6tables-save: -A FORWARD -p tcp -j TCPCHAOS"} {
		if !strings.Contains(left, want) {
			t.Errorf("after SIGKILL, %q is gone; left:\n%s", want, left)
		}
	}
	for _, a := range []netip.Addr{s.tp.Server4, s.tp.Server6} {
		addr := netip.AddrPortFrom(a, port).String()
		start := time.Now()
		c, err := s.tp.Client.Dial("tcp", addr, ioTimeout)
		if err != nil {
			t.Fatalf("dial %s with the rules of a killed run: %v", addr, err)
		}
		within(t, "connect() to "+addr+" (nobody drops the SYN)", time.Since(start), 0, 500*time.Millisecond)
		if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
		request(t, c)
		c.Close()
	}

	code, _, stderr := runTcpchaos(t, "run", "-c", configPath("lost-first-syn.yaml"), "--netns", s.tp.Router.Path, "--queue", nextQueue())
	if code != 1 || !strings.Contains(stderr, "tcpchaos cleanup") {
		t.Errorf("run over leftovers: exit %d, stderr %q; want exit 1 pointing at tcpchaos cleanup", code, stderr)
	}
	for i := range 2 {
		code, stdout, stderr := runTcpchaos(t, "cleanup", "--netns", s.tp.Router.Path)
		if code != 0 || !strings.Contains(stdout, "no tcpchaos rules are installed") {
			t.Errorf("cleanup %d: exit %d, stdout %q, stderr %q; want exit 0", i+1, code, stdout, stderr)
		}
		if left := chainsIn(t, s.tp.Router); left != "" {
			t.Errorf("after cleanup %d:\n%s", i+1, left)
		}
	}
}

// TestLocalMode: tcpchaos in the server's namespace (mode local,
// configs/lost-first-syn.yaml) drops the first SYN arriving there. The
// server's interface sees both SYNs (the capture is before the INPUT
// hook), the same sequence number about 1 s apart; the server answers only
// the second; connect() succeeds after about 1 s.
func TestLocalMode(t *testing.T) {
	t.Parallel()
	tp := netlabtest.NewTopology(t)
	server := netip.AddrPortFrom(tp.Server4, port)
	serve(t, tp.Server.Listen(t, "tcp", server.String()), pingPong(0))
	capture := tp.Server.Capture(t, tp.HostIf, "tcp")
	chaos := startTcpchaos(t, tp.Server, configPath("lost-first-syn.yaml"), "--mode", "local")
	if !strings.Contains(chaos.stderr.String(), "local mode") {
		t.Errorf("tcpchaos does not announce local mode:\n%s", chaos.stderr.String())
	}
	start := time.Now()
	c, err := tp.Client.Dial("tcp", server.String(), ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", server, err)
	}
	within(t, "connect()", time.Since(start), 900*time.Millisecond, 3*time.Second)
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	request(t, c)
	c.Close()
	waitFor(t, capture, "the server's FIN", atLeast(1, from(tp.Server4), isFin))
	pkts := capture.Stop()
	evs := chaos.stop()
	t.Logf("server eth0:\n%s\nevents:\n%s", dump(pkts), dumpEvents(evs))

	gaps := sameSegment(t, "client SYNs at the server", pick(pkts, from(tp.Client4), isSyn), 2, pkts)
	if len(gaps) == 1 {
		within(t, "SYN retransmission gap", gaps[0], 900*time.Millisecond, 3*time.Second)
	}
	if n := count(pkts, from(tp.Server4), isSynAck); n != 1 {
		t.Errorf("%d SYN-ACKs from the server, want 1 (the first SYN never reached TCP)", n)
	}
	wantFault(t, evs, "lose-first-syn", rules.Drop, statetrack.Syn, statetrack.Client, 1)
}

// TestConfigErrorInstallsNothing: an invalid config makes `run` exit 2
// with the key path and the reason, before anything is installed.
func TestConfigErrorInstallsNothing(t *testing.T) {
	t.Parallel()
	ns := netlabtest.NewNamespace(t, "router")
	before := rulesIn(t, ns)
	for _, tc := range []struct{ name, config, want string }{
		{"unknown kind", "rules:\n  - match: {packet: sin}\n    action: drop\n", `rules[0].match.packet: unknown packet kind "sin"`},
		{"probability", "rules:\n  - match: {packet: syn}\n    action: drop\n    probability: 1.5\n", "rules[0].probability"},
		{"bad CIDR", "intercept:\n  hosts: [198.18.0.0/33]\nrules: []\n", "intercept.hosts[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(file, []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runTcpchaos(t, "run", "-c", file, "--netns", ns.Path, "--queue", nextQueue())
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and %q", code, stderr, tc.want)
			}
			if after := rulesIn(t, ns); after != before {
				t.Errorf("rules changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// rulesIn returns ns's IPv4 and IPv6 rules, iptables-save's comments
// (which carry the time) left out.
func rulesIn(t *testing.T, ns *netlabtest.NS) string {
	t.Helper()
	var b strings.Builder
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		for line := range strings.Lines(ns.Run(t, cmd)) {
			if !strings.HasPrefix(line, "#") {
				b.WriteString(cmd + ": " + line)
			}
		}
	}
	return b.String()
}
