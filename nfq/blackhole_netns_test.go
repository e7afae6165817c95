package nfq_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// startBlackhole installs the blackhole rules in the router and runs a
// queue with a pipeline deciding by rs, as `tcpchaos run` sets them up for
// a set that darkens.
func startBlackhole(t *testing.T, tp *netlabtest.Topology, rs []rules.Rule) (*running, *pipeline.Pipeline, *nfq.Interception) {
	t.Helper()
	set := rules.Compile(rs)
	if !set.Darkens() {
		t.Fatal("the rules do not darken")
	}
	p := pipeline.New(statetrack.Config{ServerPorts: []uint16{serverPort}}, set, 1, nil)
	r, in := startInstalled(t, tp, p, nfq.InstallOptions{Blackhole: true},
		nfq.Options{Queue: queueNum, Blackhole: true, CopyRange: nfq.HeaderCopyRange})
	return r, p, in
}

// darkCounts is what a blackhole cost so far: the dark connection's
// packets dropped in user space (the pipeline's blackhole decisions) and
// in the kernel (the DROP rules' counters).
type darkCounts struct{ user, kernel uint64 }

func readDark(tp *netlabtest.Topology, r *running, p *pipeline.Pipeline, in *nfq.Interception) (darkCounts, error) {
	var d darkCounts
	r.q.Do(func() { d.user = p.Summary().Stats.Actions[rules.Blackhole] })
	err := tp.Router.Do(func() error {
		ds, err := in.DarkDrops()
		d.kernel = ds.Packets
		return err
	})
	return d, err
}

// sampleDark reads darkCounts once the blackhole started (within 10 s),
// 0.3 s after (the backlog is drained) and 0.2 s before it heals.
func sampleDark(tp *netlabtest.Topology, r *running, p *pipeline.Pipeline, in *nfq.Interception, heal time.Duration) (early, late darkCounts, err error) {
	deadline := time.Now().Add(10 * time.Second)
	for early.user == 0 && err == nil {
		if time.Now().After(deadline) {
			return early, late, errors.New("no blackhole within 10 s")
		}
		time.Sleep(time.Millisecond)
		early, err = readDark(tp, r, p, in)
	}
	darkAt := time.Now()
	time.Sleep(300 * time.Millisecond)
	if early, err = readDark(tp, r, p, in); err != nil {
		return early, late, err
	}
	time.Sleep(time.Until(darkAt.Add(heal - 200*time.Millisecond)))
	late, err = readDark(tp, r, p, in)
	return early, late, err
}

// TestBlackholeBulkDarkInTheKernel: a 16 MB response blackholed in both
// directions for 2 s after its 100th data segment stalls and completes
// once the conntrack mark is cleared: the heal. Of the dark connection's
// packets, user space sees the matching one and those already queued
// when its verdict went out, then nothing more: while the kernel's DROP
// rules count the server's retransmissions (TCP sends little into a
// blackhole: what is in flight, then retransmissions backing off), the
// user-space count stands still.
func TestBlackholeBulkDarkInTheKernel(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		tp := netlabtest.NewTopology(t)
		const heal = 2 * time.Second
		r, p, in := startBlackhole(t, tp, []rules.Rule{{
			Name:   "vanish",
			Match:  rules.Match{Packets: []statetrack.Kind{statetrack.Data}, From: new(statetrack.Server), Nth: 100},
			Action: rules.Action{Type: rules.Blackhole, Blackhole: rules.Both, For: heal}, Probability: 1,
		}})
		const body = 16 << 20
		serve(t, tp.Server.Listen(t, "tcp", serverAddr(tp, v6)), body)
		conn := dialServer(t, tp, v6)
		start := time.Now()
		type samples struct {
			early, late darkCounts
			err         error
		}
		sampled := make(chan samples, 1)
		go func() {
			var sm samples
			sm.early, sm.late, sm.err = sampleDark(tp, r, p, in, heal)
			sampled <- sm
		}()
		exchange(t, conn, body)
		took := time.Since(start)
		sm := <-sampled
		if sm.err != nil {
			t.Fatal(sm.err)
		}
		early, late := sm.early, sm.late
		s := settled(t, r.q)
		var sum pipeline.Summary
		r.q.Do(func() { sum = p.Summary() }) // the connection's close may still be crossing
		final, err := readDark(tp, r, p, in)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("took %v; dark 0.3 s in: %+v, just before the heal: %+v, at the end: %+v; queue received %d",
			took.Round(time.Millisecond), early, late, final, s.Received)
		if early.user == 0 || late.user != early.user {
			t.Errorf("dark packets in user space: %d 0.3 s into the blackhole, %d just before the heal; want some (the matching one), then no more", early.user, late.user)
		}
		if late.kernel <= early.kernel {
			t.Errorf("the kernel dropped %d packets 0.3 s into the blackhole, %d just before the heal; want the retransmissions in between", early.kernel, late.kernel)
		}
		if took < heal {
			t.Errorf("the transfer took %v, less than the blackhole's %v", took, heal)
		}
		if s.Healed != 1 || s.HealsFailed != 0 || sum.Stats.Healed != 1 {
			t.Errorf("healed %d (%d failed) in the kernel, %d in the pipeline; want 1, 0, 1", s.Healed, s.HealsFailed, sum.Stats.Healed)
		}
	})
}

// echoOnce writes b over conn and waits up to wait for its echo.
func echoOnce(conn net.Conn, b string, wait time.Duration) error {
	if _, err := io.WriteString(conn, b); err != nil {
		return fmt.Errorf("write %q: %w", b, err)
	}
	return readEcho(conn, b, wait)
}

// readEcho waits up to wait for b's echo.
func readEcho(conn net.Conn, b string, wait time.Duration) error {
	conn.SetReadDeadline(time.Now().Add(wait))
	got := make([]byte, len(b))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("read the echo of %q: %w", b, err)
	}
	if string(got) != b {
		return fmt.Errorf("echo %q, want %q", got, b)
	}
	return nil
}

// TestBlackholeMarksGoWithTheRules: a connection a run left dark forever
// is not dark to the next run: removing the interception clears the dark
// bits of conntrack's entries, or the next run's DROP rules would drop a
// connection none of its rules darkened (a long-lived pooled connection
// across two CI runs, say). So does `tcpchaos cleanup` after a killed run.
func TestBlackholeMarksGoWithTheRules(t *testing.T) {
	for _, remove := range []struct {
		name string
		fn   func(in *nfq.Interception) func() error
	}{{"remove", func(in *nfq.Interception) func() error { return in.Remove }}, {"cleanup", func(*nfq.Interception) func() error { return nfq.Cleanup }}} {
		t.Run(remove.name, func(t *testing.T) { darkAcrossRuns(t, remove.fn) })
	}
}

// darkAcrossRuns is TestBlackholeMarksGoWithTheRules with the first run's
// rules taken out by remove.
func darkAcrossRuns(t *testing.T, remove func(in *nfq.Interception) func() error) {
	families(t, func(t *testing.T, v6 bool) {
		tp := netlabtest.NewTopology(t)
		fromClient := func(nth uint32) []rules.Rule {
			return []rules.Rule{{
				Name:   "vanish",
				Match:  rules.Match{Packets: []statetrack.Kind{statetrack.Data}, From: new(statetrack.Client), Nth: nth},
				Action: rules.Action{Type: rules.Blackhole, Blackhole: rules.Both}, Probability: 1,
			}}
		}
		r, _, in := startBlackhole(t, tp, fromClient(2))
		netlabtest.Serve(t, tp.Server.Listen(t, "tcp", serverAddr(tp, v6)), 20*time.Second, func(c net.Conn) error {
			_, err := io.Copy(c, c)
			return err
		})
		conn := dialServer(t, tp, v6)
		if err := echoOnce(conn, "a", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := echoOnce(conn, "b", 500*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the connection is not dark: %v", err)
		}
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		if err := tp.Router.Do(remove(in)); err != nil {
			t.Fatal(err)
		}
		if err := readEcho(conn, "b", 10*time.Second); err != nil {
			t.Fatalf("without tcpchaos's rules: %v", err)
		}
		startBlackhole(t, tp, fromClient(1000))
		if err := echoOnce(conn, "c", 5*time.Second); err != nil {
			t.Errorf("under the next run, whose rules darkened nothing: %v", err)
		}
	})
}

// TestBlackholeHealsBehindNAT: the router masquerades the client, so
// conntrack's tuples are client→server and server→router: a server's
// packet seen in FORWARD (server→client, already translated back) is in
// neither, and its connection must still heal (a lookup by the packet
// alone found nothing, took that for a connection gone, and left it dark
// for ever).
func TestBlackholeHealsBehindNAT(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		tp := netlabtest.NewTopology(t)
		binary, server := "iptables", tp.Server4.String()
		if v6 {
			binary, server = "ip6tables", tp.Server6.String()
		}
		tp.Router.Run(t, binary, "-t", "nat", "-A", "POSTROUTING", "-d", server, "-j", "MASQUERADE")
		r, _, _ := startBlackhole(t, tp, []rules.Rule{{
			Name:   "vanish",
			Match:  rules.Match{Packets: []statetrack.Kind{statetrack.Data}, From: new(statetrack.Server), Nth: 20},
			Action: rules.Action{Type: rules.Blackhole, Blackhole: rules.Both, For: time.Second}, Probability: 1,
		}})
		const body = 1 << 20
		serve(t, tp.Server.Listen(t, "tcp", serverAddr(tp, v6)), body)
		exchange(t, dialServer(t, tp, v6), body)
		if s := settled(t, r.q); s.Healed != 1 || s.HealsFailed != 0 {
			t.Errorf("healed %d (%d failed), want 1", s.Healed, s.HealsFailed)
		}
	})
}
