//go:build linux

package metrics

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// twoQueues is a source of two queues of one rule set, with known counts.
func twoQueues() Source {
	q := func(n uint16, syns uint64) Queue {
		var s pipeline.Summary
		s.Stats.KindActions[statetrack.Syn][rules.Accept] = syns
		s.Stats.KindActions[statetrack.Syn][rules.Drop] = 1
		s.Tracker = statetrack.Stats{Connections: syns + 3, Midstream: 2, NewIncarnations: 1, TimeWaitExpired: 4, IdleExpired: 1, Evicted: 0, Untracked: 7}
		s.Tracked = 2
		s.Rules = []pipeline.RuleHits{{Name: "lose-first-syn", Action: rules.Drop, Hits: 1}}
		var st statetrack.StatePairs
		st[statetrack.Established][statetrack.Established] = 1
		st[statetrack.TimeWait][statetrack.Closed] = 1
		stats := nfq.Stats{Received: syns + 1, Held: 1, CopiesSent: 2, DecodeFailures: 1,
			Kernel: nfq.KernelStats{IDSequence: uint32(syns + 4), QueueDropped: 0, UserDropped: 3, Waiting: 1, CopyRange: 256}}
		stats.VerdictLatency.Counts[6] = syns       // (32, 64] µs
		stats.VerdictLatency.Counts[10] = 1         // (512, 1024] µs
		stats.VerdictLatency.Sum = time.Millisecond // not the bucket's, but known
		return Queue{Number: n, Summary: s, States: st, Stats: stats}
	}
	return Source{
		Queues:    func() []Queue { return []Queue{q(100, 5), q(101, 3)} },
		Reloads:   func() Reloads { return Reloads{OK: 2, Refused: 1} },
		QueueFull: func() (nfq.QueueFull, error) { return nfq.QueueFull{RulePackets: 40, Queued: 16, Unseen: 24}, nil },
		Version:   "v1.2.3",
	}
}

func TestCollectorAddsUpTheQueues(t *testing.T) {
	want := `
# HELP tcpchaos_connections Tracked connections by the states of their client and server endpoints (pairs with none are not exposed).
# TYPE tcpchaos_connections gauge
tcpchaos_connections{client_state="ESTABLISHED",server_state="ESTABLISHED"} 2
tcpchaos_connections{client_state="TIME_WAIT",server_state="CLOSED"} 2
# HELP tcpchaos_connections_total Tracked connections by outcome: created by a first SYN (new), picked up after their handshake (midstream), a SYN reusing a tuple in TIME_WAIT or CLOSED (new_incarnation); removed after TIME_WAIT or the idle timeout (expired), or to make room (evicted).
# TYPE tcpchaos_connections_total counter
tcpchaos_connections_total{outcome="evicted"} 0
tcpchaos_connections_total{outcome="expired"} 10
tcpchaos_connections_total{outcome="midstream"} 4
tcpchaos_connections_total{outcome="new"} 8
tcpchaos_connections_total{outcome="new_incarnation"} 2
# HELP tcpchaos_rule_hits_total Packets each rule acted on, with the rule's action.
# TYPE tcpchaos_rule_hits_total counter
tcpchaos_rule_hits_total{action="drop",rule="lose-first-syn"} 2
# HELP tcpchaos_tracked_connections Connections the trackers hold.
# TYPE tcpchaos_tracked_connections gauge
tcpchaos_tracked_connections 4
# HELP tcpchaos_held_packets Packets held by delay actions, awaiting release.
# TYPE tcpchaos_held_packets gauge
tcpchaos_held_packets 2
# HELP tcpchaos_config_reloads_total Config reloads by result: ok (the rules were replaced), refused (the new config did not validate; the rules stayed).
# TYPE tcpchaos_config_reloads_total counter
tcpchaos_config_reloads_total{result="ok"} 2
tcpchaos_config_reloads_total{result="refused"} 1
# HELP tcpchaos_queue_user_dropped_total Packets the kernel failed to hand to tcpchaos's socket (user_dropped of /proc/net/netfilter/nfnetlink_queue).
# TYPE tcpchaos_queue_user_dropped_total counter
tcpchaos_queue_user_dropped_total{queue="100"} 3
tcpchaos_queue_user_dropped_total{queue="101"} 3
# HELP tcpchaos_queue_unseen_total Packets the kernel queued that tcpchaos never read: with fail-open they passed unseen (id_sequence minus packets received).
# TYPE tcpchaos_queue_unseen_total counter
tcpchaos_queue_unseen_total{queue="100"} 3
tcpchaos_queue_unseen_total{queue="101"} 3
# HELP tcpchaos_queue_full_unseen_total Packets that found their queue full and passed unseen, without an id (fail-open; the kernel counts them nowhere): the NFQUEUE rules' packet counters, both families, minus the queues' id_sequence.
# TYPE tcpchaos_queue_full_unseen_total counter
tcpchaos_queue_full_unseen_total 24
`
	names := []string{"tcpchaos_connections", "tcpchaos_connections_total", "tcpchaos_rule_hits_total", "tcpchaos_tracked_connections",
		"tcpchaos_held_packets", "tcpchaos_config_reloads_total", "tcpchaos_queue_user_dropped_total", "tcpchaos_queue_unseen_total",
		"tcpchaos_queue_full_unseen_total"}
	if err := testutil.CollectAndCompare(NewCollector(twoQueues()), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestCollectorPacketsAndHistogram(t *testing.T) {
	out, err := testutil.CollectAndFormat(NewCollector(twoQueues()), expfmt.TypeTextPlain, "tcpchaos_packets_total", "tcpchaos_verdict_seconds", "tcpchaos_build_info", "tcpchaos_queue_copies_total")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`tcpchaos_packets_total{action="accept",kind="syn"} 8`,
		`tcpchaos_packets_total{action="drop",kind="syn"} 2`,
		`tcpchaos_packets_total{action="drop",kind="fin"} 0`,
		`tcpchaos_verdict_seconds_bucket{le="3.2e-05"} 0`,
		`tcpchaos_verdict_seconds_bucket{le="6.4e-05"} 8`,
		`tcpchaos_verdict_seconds_bucket{le="0.000512"} 8`,
		`tcpchaos_verdict_seconds_bucket{le="0.001024"} 10`,
		`tcpchaos_verdict_seconds_bucket{le="+Inf"} 10`,
		`tcpchaos_verdict_seconds_sum 0.002`,
		`tcpchaos_verdict_seconds_count 10`,
		`tcpchaos_build_info{goversion="` + runtime.Version() + `",version="v1.2.3"} 1`,
		`tcpchaos_queue_copies_total{queue="101",result="sent"} 2`,
		`tcpchaos_queue_copies_total{queue="101",result="failed"} 0`,
	} {
		if !strings.Contains(string(out), line+"\n") {
			t.Errorf("no line %q in\n%s", line, out)
		}
	}
}

func TestCollectorLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(NewCollector(twoQueues()))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestCollectorWithoutReloadsOrKernel: without a reload hook both results
// read 0; a queue whose kernel line is missing has no kernel metrics; a
// queue-full count that cannot be read is left out, the scrape goes on.
func TestCollectorWithoutReloadsOrKernel(t *testing.T) {
	src := twoQueues()
	src.Reloads = nil
	src.QueueFull = func() (nfq.QueueFull, error) { return nfq.QueueFull{}, errors.New("iptables: no chain") }
	qs := src.Queues()
	qs[1].Stats.KernelErr = errors.New("gone")
	src.Queues = func() []Queue { return qs }
	c := NewCollector(src)
	if n := testutil.CollectAndCount(c, "tcpchaos_queue_kernel_queued_total"); n != 1 {
		t.Errorf("%d kernel queued series, want 1 (queue 100 only)", n)
	}
	if n := testutil.CollectAndCount(c, "tcpchaos_queue_full_unseen_total"); n != 0 {
		t.Errorf("%d queue-full series after a failed read, want none", n)
	}
	out, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, "tcpchaos_config_reloads_total")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `tcpchaos_config_reloads_total{result="ok"} 0`) || !strings.Contains(string(out), `{result="refused"} 0`) {
		t.Errorf("reloads without a hook:\n%s", out)
	}
}

func TestListenAddr(t *testing.T) {
	for addr, want := range map[string]string{
		":9464": "127.0.0.1:9464", "0.0.0.0:9464": "0.0.0.0:9464", "[::]:0": "[::]:0", "localhost:80": "localhost:80",
	} {
		if got, err := ListenAddr(addr); err != nil || got != want {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	for _, addr := range []string{"9464", "", ":", ":http", "host:65536", ":-1"} {
		if _, err := ListenAddr(addr); !errors.Is(err, ErrAddr) {
			t.Errorf("ListenAddr(%q): %v, want ErrAddr", addr, err)
		}
	}
}

func TestServerScrape(t *testing.T) {
	s, err := Listen(":0")
	if err != nil {
		t.Fatal(err)
	}
	if a := s.l.Addr().(*net.TCPAddr); !a.IP.IsLoopback() {
		t.Errorf("a bare port listens on %s, want loopback", a)
	}
	if _, err := Listen(s.l.Addr().String()); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("a port in use: %v, want address already in use", err)
	}
	s.Serve(NewCollector(twoQueues()))
	want := `
# HELP tcpchaos_tracked_connections Connections the trackers hold.
# TYPE tcpchaos_tracked_connections gauge
tcpchaos_tracked_connections 4
`
	if err := testutil.ScrapeAndCompare(s.URL(), strings.NewReader(want), "tcpchaos_tracked_connections"); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if err := testutil.ScrapeAndCompare(s.URL(), strings.NewReader(want), "tcpchaos_tracked_connections"); err == nil {
		t.Error("scraped after Close")
	}
}

// TestEveryMetricIsDocumented: README.md names every metric the collector
// describes.
func TestEveryMetricIsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc, 100)
	NewCollector(twoQueues()).Describe(ch)
	close(ch)
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	n := 0
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		n++
		if !strings.Contains(string(readme), "| `"+m[1]+"` |") {
			t.Errorf("README.md has no row for %s", m[1])
		}
	}
	if n < 15 {
		t.Errorf("%d metrics described, want at least 15", n)
	}
}

// blocking is a collector whose Collect waits for release.
type blocking struct{ entered, release chan struct{} }

func (blocking) Describe(chan<- *prometheus.Desc) {}
func (b blocking) Collect(chan<- prometheus.Metric) {
	b.entered <- struct{}{}
	<-b.release
}

// TestServerBoundsScrapesAndIdleClients: scrapes beyond maxScrapes at once
// are refused (each one holds every queue's packets up in turn), and a
// client left idle after a scrape is disconnected.
func TestServerBoundsScrapesAndIdleClients(t *testing.T) {
	defer func(d time.Duration) { idleTimeout = d }(idleTimeout)
	idleTimeout = 200 * time.Millisecond
	s, err := Listen(":0")
	if err != nil {
		t.Fatal(err)
	}
	b := blocking{make(chan struct{}), make(chan struct{})}
	s.Serve(b)
	defer s.Close()
	hc := http.Client{Timeout: 10 * time.Second}
	get := func() (int, error) {
		resp, err := hc.Get(s.URL())
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	codes := make(chan int, maxScrapes)
	for range maxScrapes {
		go func() { c, _ := get(); codes <- c }()
		<-b.entered
	}
	if c, err := get(); err != nil || c != http.StatusServiceUnavailable {
		t.Errorf("a scrape beyond %d at once: %d, %v; want 503", maxScrapes, c, err)
	}
	close(b.release)
	for range maxScrapes {
		if c := <-codes; c != http.StatusOK {
			t.Errorf("a scrape within the bound: %d, want 200", c)
		}
	}

	c, err := net.Dial("tcp", s.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		for range b.entered {
		}
	}()
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("an idle client after a scrape: read %v, want EOF (closed by the server)", err)
	}
}

// TestBounded: a read slower than the bound goes on in the background
// while calls return the last result (an error before the first), one
// read at a time; once it ends, calls return its result.
func TestBounded(t *testing.T) {
	release := make(chan struct{})
	var reads atomic.Int32
	read := Bounded(func() (int, error) {
		n := reads.Add(1)
		if n == 2 {
			<-release // the second read hangs (the xtables lock held)
		}
		return int(n), nil
	}, 50*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for { // the first read may outlast the bound on a busy machine
		v, err := read()
		if err == nil && v == 1 {
			break
		}
		if err == nil || time.Now().After(deadline) {
			t.Fatalf("first read: %d, %v; want 1", v, err)
		}
	}
	for range 3 {
		start := time.Now()
		if v, err := read(); v != 1 || err != nil {
			t.Errorf("while the second read hangs: %d, %v; want the last, 1", v, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("a call took %v, want about the bound (50ms)", took)
		}
	}
	if n := reads.Load(); n != 2 {
		t.Errorf("%d reads started, want 2: one at a time", n)
	}
	close(release)
	deadline = time.Now().Add(5 * time.Second)
	for {
		if v, _ := read(); v == 2 || v == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hung read's result never came")
		}
	}
	never := make(chan struct{})
	t.Cleanup(func() { close(never) })
	hung := Bounded(func() (int, error) { <-never; return 0, nil }, 10*time.Millisecond)
	if _, err := hung(); err == nil {
		t.Error("a read that never returned: no error, want one (nothing read yet)")
	}
}
