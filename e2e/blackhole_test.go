package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// fired returns the events in which a rule matched the packet (not the
// packets a blackhole dropped after, nor heals).
func fired(evs []events.Event) []events.Event {
	var out []events.Event
	for _, e := range evs {
		if e.Fired() {
			out = append(out, e)
		}
	}
	return out
}

// wantBlackhole checks that the blackhole rule fired once, on the nth
// packet of kind from the sender, darkening dark, and returns its event.
func wantBlackhole(t *testing.T, evs []events.Event, rule string, action rules.ActionType, kind statetrack.Kind, from statetrack.Side, nth uint32, dark rules.Endpoints) events.Event {
	t.Helper()
	f := fired(evs)
	if len(f) != 1 {
		t.Fatalf("%d firings, want 1:\n%s", len(f), dumpEvents(evs))
	}
	e := f[0]
	if e.Rule != rule || e.Action != action || e.Kind != kind || e.From != from || e.Nth != nth || e.Dark != dark {
		t.Errorf("firing = rule %s %s %s from %s nth %d blackhole %s, want rule %s %s %s from %s nth %d blackhole %s",
			e.Rule, e.Action, e.Kind, e.From, e.Nth, e.Dark.Direction(), rule, action, kind, from, nth, dark.Direction())
	}
	return e
}

// darkSummary is the summary's blackhole line.
type darkSummary struct{ user, kernel, kernelBytes, healed uint64 }

func readDarkSummary(t *testing.T, tc *tcpchaos) darkSummary {
	t.Helper()
	out := tc.stdout.String()
	var d darkSummary
	var failed uint64
	i := strings.Index(out, "blackhole: ")
	if i < 0 {
		t.Fatalf("the summary lacks the blackhole line:\n%s", out)
	}
	_, err := fmt.Sscanf(out[i:], "blackhole: %d packets dropped in user space; %d packets (%d bytes) dropped in the kernel; %d healed (%d could not be)",
		&d.user, &d.kernel, &d.kernelBytes, &d.healed, &failed)
	if err != nil || failed != 0 {
		t.Errorf("summary blackhole line (%v, %d heals failed):\n%s", err, failed, out[i:])
	}
	return d
}

// keepaliveTimer matches ss -o's keepalive timer and its probe count.
var keepaliveTimer = regexp.MustCompile(`timer:\(keepalive,[^,]*,(\d+)\)`)

// TestClientVanishes: configs/client-vanishes.yaml. After one exchange,
// the server's socket (SO_KEEPALIVE, idle 1s, interval 1s, count 3)
// probes a client that no longer answers: its first probe darkens the
// connection, the probes cross to the router and no further, `ss -o`
// shows the keepalive timer counting them, and the server's read fails
// with ETIMEDOUT after idle + count × interval. Its RST is dropped too;
// the tracker sees the server CLOSED.
func TestClientVanishes(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		const idle, interval, probes = time.Second, time.Second, 3
		predicted := idle + probes*interval
		s := newScenario(t, "client-vanishes.yaml", v6)
		type result struct {
			err  error
			took time.Duration // from the client's last ACK (the pong sent) to the failure
		}
		gaveUp := make(chan result, 1)
		s.listen(func(c net.Conn) error {
			err := c.(*net.TCPConn).SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: idle, Interval: interval, Count: probes})
			if err != nil {
				return fmt.Errorf("set keepalive: %w", err)
			}
			r := bufio.NewReader(c)
			if _, err := r.ReadString('\n'); err != nil {
				return fmt.Errorf("read request: %w", err)
			}
			if _, err := io.WriteString(c, "pong\n"); err != nil {
				return fmt.Errorf("write response: %w", err)
			}
			start := time.Now()
			_, err = r.ReadString('\n')
			gaveUp <- result{err, time.Since(start)}
			return nil
		})
		c, _ := s.dial()
		request(t, c)
		pongAt := time.Now()

		maxProbes := 0 // the highest probe count ss showed
		var res result
	probing:
		for {
			select {
			case res = <-gaveUp:
				break probing
			case <-time.After(100 * time.Millisecond):
			}
			for line := range strings.Lines(s.tp.Server.Run(t, "ss", "-tnoH", "state", "established")) {
				if m := keepaliveTimer.FindStringSubmatch(line); m != nil && strings.Contains(line, fmt.Sprintf(":%d ", port)) {
					n, _ := strconv.Atoi(m[1])
					maxProbes = max(maxProbes, n)
				}
			}
			if time.Since(pongAt) > 3*ioTimeout {
				t.Fatal("the server's read did not fail")
			}
		}
		t.Logf("keepalive give-up: measured %v, predicted idle + count × interval = %v", res.took.Round(time.Millisecond), predicted)
		if !errors.Is(res.err, syscall.ETIMEDOUT) {
			t.Errorf("server read: %v, want ETIMEDOUT", res.err)
		}
		within(t, "keepalive give-up", res.took, predicted-300*time.Millisecond, predicted+3*time.Second)
		if maxProbes < 1 {
			t.Errorf("ss -o never showed timer:(keepalive,…) with a probe out")
		}
		waitFor(t, s.toServer, "the server's RST", atLeast(1, from(s.server), isRst))
		atClient, atServer, evs := s.finish()

		probe := wantBlackhole(t, evs, "client-vanishes", rules.Blackhole, statetrack.Keepalive, statetrack.Server, 1, rules.Both)
		seen := pick(atServer, from(s.server), isPureAck, func(p netlabtest.Packet) bool { return uint32(p.Seq) == probe.Seq })
		if len(seen) != probes {
			t.Errorf("%d keepalive probes reached the router, want %d:\n%s", len(seen), probes, dump(seen))
		}
		for i := 1; i < len(seen); i++ {
			within(t, "gap between probes", seen[i].Time.Sub(seen[i-1].Time), interval-200*time.Millisecond, interval+time.Second)
		}
		if n := count(atClient, from(s.server), after(pongAt)); n != 0 {
			t.Errorf("%d packets of the server crossed the router after the blackhole, want none:\n%s", n, dump(atClient))
		}
		if n := count(atServer, from(s.client), after(pongAt.Add(100*time.Millisecond))); n != 0 {
			t.Errorf("%d packets of the client reached the server side after the exchange, want none", n)
		}
		var rst []events.Event
		for _, e := range packetEvents(evs, statetrack.Rst, statetrack.Server) {
			if e.Rule == "client-vanishes" && e.Action == rules.Blackhole && e.Dark == 0 {
				rst = append(rst, e)
			}
		}
		if len(rst) != 1 || rst[0].ServerState != statetrack.Closed || rst[0].ClientState != statetrack.Established {
			t.Errorf("server RST events %v, want one dropped by the blackhole, server CLOSED, client ESTABLISHED", rst)
		}
		d := readDarkSummary(t, s.chaos)
		// The first probe and the RST were dropped in user space, the
		// later probes in the kernel.
		if d.user != 2 || d.kernel != probes-1 {
			t.Errorf("summary: %d dropped in user space, %d in the kernel; want 2 (the first probe, the RST) and %d (the other probes)", d.user, d.kernel, probes-1)
		}
	})
}

// halfOpenFlow sends a first request (answered) and a second one, whose
// answer the server's blackhole takes; the client's socket has
// TCP_USER_TIMEOUT userTimeout (0: the kernel's default). It returns when
// the second request was written, how long after it the second read
// ended, and its error.
func halfOpenFlow(t *testing.T, s *scenario, userTimeout time.Duration) (sent time.Time, took time.Duration, err error) {
	t.Helper()
	s.listen(func(c net.Conn) error {
		r := bufio.NewReader(c)
		for range 2 {
			if _, err := r.ReadString('\n'); err != nil {
				return fmt.Errorf("read request: %w", err)
			}
			if _, err := io.WriteString(c, "pong\n"); err != nil {
				return fmt.Errorf("write response: %w", err)
			}
		}
		io.Copy(io.Discard, c) // until the client goes, or the deadline
		return nil
	})
	c, _ := s.dial()
	if userTimeout > 0 {
		raw, rerr := c.(*net.TCPConn).SyscallConn()
		if rerr != nil {
			t.Fatal(rerr)
		}
		var serr error
		if rerr := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout.Milliseconds()))
		}); rerr != nil || serr != nil {
			t.Fatalf("set TCP_USER_TIMEOUT: %v %v", rerr, serr)
		}
	}
	r := bufio.NewReader(c)
	for i := range 2 {
		sent = time.Now()
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			t.Fatalf("write request %d: %v", i+1, err)
		}
		var line string
		line, err = r.ReadString('\n')
		took = time.Since(sent)
		if i == 0 && (err != nil || line != "pong\n") {
			t.Fatalf("first response: %q, %v", line, err)
		}
	}
	return sent, took, err
}

// dataOf returns the packets carrying the segment at seq.
func dataOf(seq uint32) pred {
	return func(p netlabtest.Packet) bool { return p.Len > 0 && uint32(p.Seq) == seq }
}

// TestHalfOpenServer: configs/half-open-server.yaml. The second request
// reaches the server and darkens the path to the client: the server's
// ACKs and response reach the router and are dropped there, in the
// kernel; the client retransmits its request with growing gaps until its
// TCP_USER_TIMEOUT (3 s) fails the read with ETIMEDOUT.
func TestHalfOpenServer(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		const userTimeout = 3 * time.Second
		s := newScenario(t, "half-open-server.yaml", v6)
		sent, took, err := halfOpenFlow(t, s, userTimeout)
		if !errors.Is(err, syscall.ETIMEDOUT) {
			t.Errorf("client read: %v, want ETIMEDOUT", err)
		}
		t.Logf("TCP_USER_TIMEOUT %v: the read failed after %v", userTimeout, took.Round(time.Millisecond))
		within(t, "user timeout", took, userTimeout-300*time.Millisecond, userTimeout+3*time.Second)
		atClient, atServer, evs := s.finish()

		f := wantBlackhole(t, evs, "server-goes-dark", rules.Accept, statetrack.Data, statetrack.Client, 2, rules.ToClient)
		// The original, a tail loss probe, then retransmissions on the
		// RTO, each after about twice the wait of the one before.
		tries := pick(atServer, from(s.client), dataOf(f.Seq))
		if len(tries) < 5 {
			t.Fatalf("the second request crossed %d times, want the original and 4 retransmissions at least:\n%s", len(tries), dump(atServer))
		}
		for i := 3; i < len(tries); i++ {
			prev, gap := tries[i-1].Time.Sub(tries[i-2].Time), tries[i].Time.Sub(tries[i-1].Time)
			if gap < prev*3/2 {
				t.Errorf("retransmission %d after %v, the one before after %v: want the gaps to back off", i, gap, prev)
			}
		}
		if n := count(atServer, from(s.server), after(sent)); n == 0 {
			t.Errorf("no packet of the server reached the router after the second request")
		}
		if n := count(atClient, from(s.server), after(sent)); n != 0 {
			t.Errorf("%d packets of the server crossed the router after the second request, want none:\n%s", n, dump(atClient))
		}
		if d := readDarkSummary(t, s.chaos); d.kernel == 0 || d.user > 8 {
			t.Errorf("summary: %d dropped in user space, %d in the kernel; want the kernel to drop the server's packets", d.user, d.kernel)
		}
	})
}

// healingConfig is configs/half-open-server.yaml with `for: 2s` added to
// its blackhole.
func healingConfig(t *testing.T) string {
	t.Helper()
	return configVariant(t, "half-open-server.yaml", "action: {blackhole: to-client}", "action: {blackhole: to-client, for: 2s}")
}

// wantHealed runs the half-open flow under healingConfig: the dark path
// to the client heals after 2 s (one healed event at that time, one heal
// in the kernel) and the server's next retransmission of its response
// gets through: the client's read succeeds, after at least the 2 s. It
// stops tcpchaos and returns when the second request was sent.
func wantHealed(t *testing.T, s *scenario) (sent time.Time) {
	t.Helper()
	const heal = 2 * time.Second
	sent, took, err := halfOpenFlow(t, s, 0)
	if err != nil {
		t.Fatalf("client read after the heal: %v", err)
	}
	t.Logf("blackhole for %v: the response arrived after %v", heal, took.Round(time.Millisecond))
	within(t, "response after the heal", took, heal, heal+6*time.Second)
	evs := s.chaos.stop()
	s.wantExpectationsHold()

	f := wantBlackhole(t, evs, "server-goes-dark", rules.Accept, statetrack.Data, statetrack.Client, 2, rules.ToClient)
	var healed []events.Event
	for _, e := range evs {
		if e.Reason == events.Healed {
			healed = append(healed, e)
		}
	}
	if len(healed) != 1 || healed[0].Time.Sub(f.Time) != heal || healed[0].Rule != "server-goes-dark" || healed[0].Dark != rules.ToClient {
		t.Errorf("healed events %v, want one %v after the firing at %v", healed, heal, f.Time)
	}
	if d := readDarkSummary(t, s.chaos); d.healed != 1 || d.kernel == 0 {
		t.Errorf("summary: %d healed, %d dropped in the kernel; want 1 and some", d.healed, d.kernel)
	}
	return sent
}

// TestBlackholeHeals: wantHealed with tcpchaos on the router (forward
// mode); the server's packets cross the router to the client only after
// the heal.
func TestBlackholeHeals(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		const heal = 2 * time.Second
		s := newScenarioWith(t, healingConfig(t), v6)
		sent := wantHealed(t, s)
		atClient := s.toClient.Stop()
		s.toServer.Stop()
		healedAt := sent.Add(heal)
		before := func(p netlabtest.Packet) bool { return p.Time.Before(healedAt) }
		if n := count(atClient, from(s.server), after(sent), before); n != 0 {
			t.Errorf("%d packets of the server crossed the router before the heal:\n%s", n, dump(atClient))
		}
		if n := count(atClient, from(s.server), after(healedAt)); n == 0 {
			t.Errorf("no packet of the server crossed the router after the heal:\n%s", dump(atClient))
		}
	})
}

// TestBlackholeLocalMode: wantHealed with tcpchaos in the server's own
// namespace (mode local): the server's packets are dropped on output
// until the heal.
func TestBlackholeLocalMode(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		tp := netlabtest.NewTopology(t)
		s := &scenario{t: t, tp: tp, client: tp.Client4, server: tp.Server4, report: filepath.Join(t.TempDir(), "report.json")}
		if v6 {
			s.client, s.server = tp.Client6, tp.Server6
		}
		s.serverAP = netip.AddrPortFrom(s.server, port)
		s.chaos = startTcpchaos(t, tp.Server, healingConfig(t), "--mode", "local", "--report", s.report)
		wantHealed(t, s)
	})
}

// TestReloadBringingABlackholeRefused: a run whose rules had no blackhole
// installed no kernel rules for one, so a reload that brings one is
// refused with the reason; the old rule still loses the first SYN.
func TestReloadBringingABlackholeRefused(t *testing.T) {
	t.Parallel()
	s := newSteered(t, plainConfig(t, config([]int{port}, loseFirstSyn)))
	writeFile(t, s.config, config([]int{port}, "rules:\n  - name: vanish\n    match: {packet: data}\n    action: {blackhole: both}\n"))
	code, _, errOut := s.ctlRun("reload")
	if code != 1 || !strings.Contains(errOut, "a blackhole rule needs the kernel rules that keep connections dark") {
		t.Errorf("ctl reload bringing a blackhole: exit %d, %q; want 1 and a restart needed", code, errOut)
	}
	s.wantConnect(port, true, "after the refused reload")
	s.chaos.stop()
}
