package nfq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

// These tests run a Queue in the router of a netlabtest topology, fed by
// xt NFQUEUE rules in the router's mangle FORWARD chain, with a fake
// Handler; the client's and the server's kernels are the peers.

const (
	queueNum   = 100
	serverPort = 8080
)

// fakeHandler decides with decide and records what it saw.
type fakeHandler struct {
	decide func(seg *statetrack.Segment, n int) rules.Verdict // n counts Handle calls from 1

	mu        sync.Mutex
	calls     int
	delivered int
}

func (h *fakeHandler) Handle(seg *statetrack.Segment, now time.Time) rules.Verdict {
	h.mu.Lock()
	h.calls++
	n := h.calls
	h.mu.Unlock()
	if h.decide == nil {
		return rules.Verdict{}
	}
	return h.decide(seg, n)
}

func (h *fakeHandler) Deliver(v *rules.Verdict, now time.Time) {
	h.mu.Lock()
	h.delivered++
	h.mu.Unlock()
}

func (h *fakeHandler) Quieted(uint64, time.Time) {}
func (h *fakeHandler) Declined(uint64)           {}
func (h *fakeHandler) Expire(time.Time)          {}

func (h *fakeHandler) counts() (calls, delivered int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls, h.delivered
}

// onlySyn reports whether seg is a SYN without ACK.
func onlySyn(seg *statetrack.Segment) bool {
	return seg.Flags.Has(statetrack.SYN) && !seg.Flags.Has(statetrack.ACK)
}

func synAck(seg *statetrack.Segment) bool { return seg.Flags.Has(statetrack.SYN | statetrack.ACK) }

// running is a Queue running in a topology's router.
type running struct {
	q    *nfq.Queue
	stop func() error // cancels Run and returns its error
}

// queueRules installs the interception (nfq.Install, forward mode, TCP port
// serverPort, both families) in the router, plus an extra iptables
// command if given; the rules leave with the namespace.
func queueRules(t *testing.T, tp *netlabtest.Topology, extra ...string) {
	t.Helper()
	intercept(t, tp.Router, nfq.Forward)
	if len(extra) > 0 {
		tp.Router.Run(t, extra[0], extra[1:]...)
	}
}

// intercept installs the interception in ns in the given mode.
func intercept(t *testing.T, ns *netlabtest.NS, mode nfq.Mode) {
	t.Helper()
	err := ns.Do(func() error {
		_, err := nfq.Install(nfq.Intercept{Mode: mode, Ports: []uint16{serverPort}, Queue: queueNum, Queues: 1},
			nfq.InstallOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// openQueue opens the queue in the router's namespace.
func openQueue(tp *netlabtest.Topology, h nfq.Handler) (*nfq.Queue, error) {
	return openQueueIn(tp.Router, h)
}

func openQueueIn(ns *netlabtest.NS, h nfq.Handler) (*nfq.Queue, error) {
	var q *nfq.Queue
	err := ns.Do(func() (err error) {
		q, err = nfq.Open(nfq.Options{Queue: queueNum}, h)
		return err
	})
	return q, err
}

// startQueue opens and runs the queue; t.Cleanup stops it if the test
// does not.
func startQueue(t *testing.T, tp *netlabtest.Topology, h nfq.Handler) *running {
	t.Helper()
	return startQueueIn(t, tp.Router, h)
}

func startQueueIn(t *testing.T, ns *netlabtest.NS, h nfq.Handler) *running {
	t.Helper()
	q, err := openQueueIn(ns, h)
	if err != nil {
		t.Fatal(err)
	}
	return startOpened(t, q)
}

// startOpened runs an open queue; t.Cleanup stops it if the test does not.
func startOpened(t *testing.T, q *nfq.Queue) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	var once sync.Once
	var runErr error
	r := &running{q: q, stop: func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("Run did not return within 10s of cancel")
			}
		})
		return runErr
	}}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// serve answers HTTP-like requests: it reads up to the blank line, writes
// a response with body bytes of payload, and closes. A client that goes
// away early is no error.
func serve(t *testing.T, ln net.Listener, body int) {
	netlabtest.Serve(t, ln, 20*time.Second, func(c net.Conn) error {
		var req []byte
		buf := make([]byte, 512)
		for !bytes.Contains(req, []byte("\r\n\r\n")) {
			n, err := c.Read(buf)
			if err != nil {
				return nil
			}
			req = append(req, buf[:n]...)
		}
		fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n", body)
		c.Write(responseBody(body))
		return nil
	})
}

// dialServer connects from the client to the test server (IPv6 if v6),
// failing the test if it cannot; the connection is closed at cleanup.
func dialServer(t *testing.T, tp *netlabtest.Topology, v6 bool) net.Conn {
	t.Helper()
	conn, err := tp.Client.Dial("tcp", serverAddr(tp, v6), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func responseBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// exchange does one request over conn and checks the whole response.
func exchange(t *testing.T, conn net.Conn, body int) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	head := fmt.Sprintf("HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n", body)
	if !bytes.HasPrefix(resp, []byte(head)) || !bytes.Equal(resp[len(head):], responseBody(body)) {
		t.Fatalf("response of %d bytes is not the %d expected", len(resp), len(head)+body)
	}
}

func serverAddr(tp *netlabtest.Topology, v6 bool) string {
	a := tp.Server4
	if v6 {
		a = tp.Server6
	}
	return netip.AddrPortFrom(a, serverPort).String()
}

func families(t *testing.T, fn func(t *testing.T, v6 bool)) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) { fn(t, v6) })
	}
}

// settled waits until the queue has had nothing in flight for 200 ms (the
// close's last packets) and returns its stats then.
func settled(t *testing.T, q *nfq.Queue) nfq.Stats {
	t.Helper()
	var last nfq.Stats
	quiet := 0
	for range 250 { // 5 s
		s := q.Stats()
		if s.Received == last.Received && s.Kernel.Waiting == 0 {
			if quiet++; quiet == 10 {
				return s
			}
		} else {
			quiet = 0
		}
		last = s
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("queue did not settle: %+v", last)
	return last
}

// TestAcceptAll: with a Handler that accepts everything, an HTTP-like
// exchange with a 200 KB response (GSO super-packets) passes whole, every
// packet is received and accepted, and the kernel's id sequence matches.
func TestAcceptAll(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		tp := netlabtest.NewTopology(t)
		queueRules(t, tp)
		ln := tp.Server.Listen(t, "tcp", serverAddr(tp, v6))
		serve(t, ln, 200_000)
		h := &fakeHandler{}
		r := startQueue(t, tp, h)

		conn := dialServer(t, tp, v6)
		exchange(t, conn, 200_000)
		conn.Close()

		s := settled(t, r.q)
		if s.KernelErr != nil {
			t.Fatalf("kernel view: %v", s.KernelErr)
		}
		calls, _ := h.counts()
		if s.Received < 6 || s.Accepted != s.Received || uint64(calls) != s.Received || s.DecodeFailures != 0 {
			t.Errorf("stats %+v, handler calls %d: want every packet received, handled and accepted", s, calls)
		}
		if s.Kernel.IDSequence != uint32(s.Received) || s.Unreceived() != 0 || s.Kernel.CopyRange != 65531 {
			t.Errorf("kernel view %+v, received %d", s.Kernel, s.Received)
		}
	})
}

// TestDropFirstSyn: the first SYN is dropped in the router: the server
// side sees one SYN fewer than the client side, and the connection
// completes after the client's retransmission (~1 s).
func TestDropFirstSyn(t *testing.T) {
	tp := netlabtest.NewTopology(t)
	queueRules(t, tp)
	ln := tp.Server.Listen(t, "tcp", serverAddr(tp, false))
	serve(t, ln, 1000)
	var dropped sync.Once
	h := &fakeHandler{decide: func(seg *statetrack.Segment, _ int) rules.Verdict {
		v := rules.Verdict{}
		if onlySyn(seg) {
			dropped.Do(func() { v.Action = rules.Drop })
		}
		return v
	}}
	r := startQueue(t, tp, h)
	clientSide := tp.Router.Capture(t, tp.RouterClientIf, "tcp port 8080")
	serverSide := tp.Router.Capture(t, tp.RouterServerIf, "tcp port 8080")

	start := time.Now()
	conn := dialServer(t, tp, false)
	took := time.Since(start)
	defer conn.Close()
	exchange(t, conn, 1000)

	syns := func(pkts []netlabtest.Packet) int {
		n := 0
		for _, p := range pkts {
			if onlySyn(&p.Segment) {
				n++
			}
		}
		return n
	}
	c, s := syns(clientSide.Stop()), syns(serverSide.Stop())
	if c != 2 || s != 1 {
		t.Errorf("SYNs: %d on the client side, %d on the server side; want 2 and 1", c, s)
	}
	if took < 800*time.Millisecond {
		t.Errorf("connect took %v: the first SYN was not lost", took)
	}
	if st := r.q.Stats(); st.Dropped != 1 {
		t.Errorf("dropped %d, want 1", st.Dropped)
	}
}

// TestDelaySynAck: SYN-ACKs are held 300 ms: a connect takes at least that
// long, while packets of another connection cross the router at once
// meanwhile.
func TestDelaySynAck(t *testing.T) {
	tp := netlabtest.NewTopology(t)
	queueRules(t, tp)
	ln := tp.Server.Listen(t, "tcp", serverAddr(tp, false))
	go func() { // echo server
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	const hold = 300 * time.Millisecond
	h := &fakeHandler{decide: func(seg *statetrack.Segment, _ int) rules.Verdict {
		if synAck(seg) {
			return rules.Verdict{Decision: rules.Decision{Action: rules.Delay, Hold: hold}}
		}
		return rules.Verdict{}
	}}
	r := startQueue(t, tp, h)

	first := dialServer(t, tp, false)

	type result struct {
		conn net.Conn
		took time.Duration
		err  error
	}
	second := make(chan result, 1)
	start := time.Now()
	go func() {
		c, err := tp.Client.Dial("tcp", serverAddr(tp, false), 5*time.Second)
		second <- result{c, time.Since(start), err}
	}()
	// Wait until the second SYN-ACK is held, then echo on the first
	// connection: its packets must not wait behind the held one.
	deadline := time.Now().Add(5 * time.Second)
	for r.q.Stats().Held == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	echoStart := time.Now()
	first.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := first.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(first, buf); err != nil {
		t.Fatal(err)
	}
	echo := time.Since(echoStart)
	stillHeld := r.q.Stats().Held

	res := <-second
	if res.err != nil {
		t.Fatal(res.err)
	}
	res.conn.Close()
	if res.took < hold {
		t.Errorf("connect took %v, want at least %v", res.took, hold)
	}
	if stillHeld != 1 || echo >= hold/2 {
		t.Errorf("echo on another connection took %v with %d packet(s) held: packets behind the held one were held up", echo, stillHeld)
	}
	if st := r.q.Stats(); st.Delayed != 2 || st.Held != 0 {
		t.Errorf("delayed %d held %d, want 2 and 0", st.Delayed, st.Held)
	}
	if _, delivered := h.counts(); delivered != 2 {
		t.Errorf("Deliver called %d times, want 2", delivered)
	}
}

// TestDuplicateSyn: one copy of the first SYN is sent 500 ms after it: the
// server side shows that SYN's sequence number twice about 500 ms apart,
// the server counts no checksum error, and the connection works.
func TestDuplicateSyn(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		tp := netlabtest.NewTopology(t)
		queueRules(t, tp)
		ln := tp.Server.Listen(t, "tcp", serverAddr(tp, v6))
		serve(t, ln, 5000)
		const after = 500 * time.Millisecond
		h := &fakeHandler{decide: func(seg *statetrack.Segment, _ int) rules.Verdict {
			if onlySyn(seg) {
				return rules.Verdict{Decision: rules.Decision{Action: rules.Duplicate, Copies: 1, After: after}}
			}
			return rules.Verdict{}
		}}
		r := startQueue(t, tp, h)
		serverSide := tp.Router.Capture(t, tp.RouterServerIf, "tcp port 8080")
		before := tp.Server.Nstat(t)

		conn := dialServer(t, tp, v6)
		twoSyns := func(pkts []netlabtest.Packet) bool {
			n := 0
			for _, p := range pkts {
				if onlySyn(&p.Segment) {
					n++
				}
			}
			return n >= 2
		}
		if !serverSide.WaitFor(5*time.Second, twoSyns) {
			t.Fatalf("no copy of the SYN on the server side:\n%s", packets(serverSide.Packets()))
		}
		exchange(t, conn, 5000)
		pkts := serverSide.Stop()
		var syns []netlabtest.Packet
		for _, p := range pkts {
			if onlySyn(&p.Segment) {
				syns = append(syns, p)
			}
		}
		if len(syns) != 2 || syns[0].Seq != syns[1].Seq || syns[0].Src != syns[1].Src {
			t.Fatalf("want the same SYN twice on the server side, got:\n%s", packets(pkts))
		}
		if gap := syns[1].Time.Sub(syns[0].Time); gap < after-50*time.Millisecond || gap > after+500*time.Millisecond {
			t.Errorf("copy %v after the original, want about %v", gap, after)
		}
		later := tp.Server.Nstat(t)
		for _, k := range []string{"TcpInCsumErrors", "IpExtInCsumErrors", "IpInHdrErrors"} {
			if later[k] != before[k] {
				t.Errorf("server %s went from %d to %d: the copy's checksums are wrong", k, before[k], later[k])
			}
		}
		if later["TcpInSegs"] <= before["TcpInSegs"] {
			t.Error("server TCP received nothing")
		}
		if st := r.q.Stats(); st.CopiesSent != 1 || st.Duplicated != 1 {
			t.Errorf("copies sent %d, duplicated %d, want 1 and 1", st.CopiesSent, st.Duplicated)
		}
		if _, delivered := h.counts(); delivered != 1 {
			t.Errorf("Deliver called %d times, want 1", delivered)
		}
	})
}

func packets(pkts []netlabtest.Packet) string {
	var b strings.Builder
	for _, p := range pkts {
		b.WriteString(p.String() + "\n")
	}
	return b.String()
}

// TestShutdownReleasesHeld: a SYN-ACK held for an hour is let through when
// Run ends: the connect completes at once (before any retransmission), the
// Handler is told, and the connection keeps working without the queue.
func TestShutdownReleasesHeld(t *testing.T) {
	tp := netlabtest.NewTopology(t)
	queueRules(t, tp)
	ln := tp.Server.Listen(t, "tcp", serverAddr(tp, false))
	serve(t, ln, 3000)
	h := &fakeHandler{decide: func(seg *statetrack.Segment, _ int) rules.Verdict {
		if synAck(seg) {
			return rules.Verdict{Decision: rules.Decision{Action: rules.Delay, Hold: time.Hour}}
		}
		return rules.Verdict{}
	}}
	r := startQueue(t, tp, h)
	clientSide := tp.Router.Capture(t, tp.RouterClientIf, "tcp port 8080")

	type result struct {
		conn net.Conn
		at   time.Time
		err  error
	}
	res := make(chan result, 1)
	start := time.Now()
	go func() {
		c, err := tp.Client.Dial("tcp", serverAddr(tp, false), 10*time.Second)
		res <- result{c, time.Now(), err}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for r.q.Stats().Held == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r.q.Stats().Held != 1 {
		t.Fatal("the SYN-ACK was not held")
	}
	stopped := time.Now()
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := <-res
	if got.err != nil {
		t.Fatal(got.err)
	}
	defer got.conn.Close()
	if took := got.at.Sub(start); took > 900*time.Millisecond {
		t.Errorf("connect took %v (stopped after %v): not released by the shutdown", took, stopped.Sub(start))
	}
	st := r.q.Stats()
	if st.Delayed != 1 || st.Held != 0 {
		t.Errorf("delayed %d held %d, want 1 and 0", st.Delayed, st.Held)
	}
	if _, delivered := h.counts(); delivered != 1 {
		t.Errorf("Deliver called %d times, want 1", delivered)
	}
	exchange(t, got.conn, 3000) // no queue any more: --queue-bypass
	synAcks := 0
	for _, p := range clientSide.Stop() {
		if synAck(&p.Segment) {
			synAcks++
		}
	}
	if synAcks != 1 {
		t.Errorf("%d SYN-ACKs reached the client, want 1 (the released one)", synAcks)
	}
}

// TestSecondOpenFails: a second Open of a bound queue number fails with
// ErrQueueInUse, and the first Queue keeps working.
func TestSecondOpenFails(t *testing.T) {
	tp := netlabtest.NewTopology(t)
	queueRules(t, tp)
	ln := tp.Server.Listen(t, "tcp", serverAddr(tp, false))
	serve(t, ln, 1000)
	h := &fakeHandler{}
	r := startQueue(t, tp, h)

	q2, err := openQueue(tp, &fakeHandler{})
	if err == nil {
		done, cancel := context.WithCancel(context.Background())
		cancel()
		q2.Run(done)
		t.Fatal("second Open of the same queue succeeded")
	}
	if !errors.Is(err, nfq.ErrQueueInUse) || !strings.Contains(err.Error(), "queue 100") {
		t.Errorf("error %q, want ErrQueueInUse naming the queue", err)
	}
	t.Logf("second Open: %v", err)

	conn := dialServer(t, tp, false)
	exchange(t, conn, 1000)
	if calls, _ := h.counts(); calls == 0 || r.q.Stats().Received == 0 {
		t.Error("the first queue saw no packet after the failed second Open")
	}
}

// TestNonTCPAccepted: a UDP datagram queued by a test rule is not TCP: it
// is accepted without the Handler and counted as a decode failure.
func TestNonTCPAccepted(t *testing.T) {
	tp := netlabtest.NewTopology(t)
	queueRules(t, tp, "iptables", "-t", "mangle", "-A", "FORWARD", "-p", "udp", "--dport", "9999",
		"-j", "NFQUEUE", "--queue-num", fmt.Sprint(queueNum), "--queue-bypass")
	h := &fakeHandler{decide: func(*statetrack.Segment, int) rules.Verdict {
		return rules.Verdict{Decision: rules.Decision{Action: rules.Drop}}
	}}
	r := startQueue(t, tp, h)

	var pc net.PacketConn
	err := tp.Server.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(tp.Server4, 9999).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var c net.Conn
	err = tp.Client.Do(func() (err error) {
		c, err = net.Dial("udp", netip.AddrPortFrom(tp.Server4, 9999).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("not tcp")); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "not tcp" {
		t.Fatalf("server got %q, %v", buf[:n], err)
	}
	st := r.q.Stats()
	if st.Received != 1 || st.DecodeFailures != 1 || st.Accepted != 1 {
		t.Errorf("stats %+v: want one packet received, not decoded, accepted", st)
	}
	if calls, _ := h.counts(); calls != 0 {
		t.Errorf("handler called %d times", calls)
	}
}

// TestDuplicateGSOData: a copy of a GSO super-packet from the server (a
// data segment longer than the MTU) leaves the router cut into segments
// that fit the path: the client side shows the duplicated sequence range
// twice, once whole and once in MTU-sized pieces, with valid checksums,
// and the response is still read intact.
func TestDuplicateGSOData(t *testing.T) {
	tp := netlabtest.NewTopology(t)
	queueRules(t, tp)
	ln := tp.Server.Listen(t, "tcp", serverAddr(tp, false))
	serve(t, ln, 500_000)
	var mu sync.Mutex
	var dup statetrack.Segment
	h := &fakeHandler{decide: func(seg *statetrack.Segment, _ int) rules.Verdict {
		mu.Lock()
		defer mu.Unlock()
		if dup.Len == 0 && seg.Src.Port() == serverPort && seg.Len > 3000 {
			dup = *seg
			return rules.Verdict{Decision: rules.Decision{Action: rules.Duplicate, Copies: 1, After: 100 * time.Millisecond}}
		}
		return rules.Verdict{}
	}}
	r := startQueue(t, tp, h)
	clientSide := tp.Router.Capture(t, tp.RouterClientIf, "tcp src port 8080")
	before := tp.Client.Nstat(t)

	conn := dialServer(t, tp, false)
	exchange(t, conn, 500_000)
	mu.Lock()
	d := dup
	mu.Unlock()
	if d.Len == 0 {
		t.Skip("no data segment over 3000 bytes reached the queue (no GSO on this path)")
	}
	inRange := func(p netlabtest.Packet) bool {
		return p.Src == d.Src && p.Len > 0 && p.Seq.InWindow(d.Seq, seqnum.Size(d.Len))
	}
	ok := clientSide.WaitFor(5*time.Second, func(pkts []netlabtest.Packet) bool {
		var n uint32
		for _, p := range pkts {
			if inRange(p) {
				n += p.Len
			}
		}
		return n >= 2*d.Len
	})
	var pieces []netlabtest.Packet
	for _, p := range clientSide.Stop() {
		if inRange(p) && p.Len < d.Len {
			pieces = append(pieces, p)
		}
	}
	if !ok {
		t.Fatalf("the copy of %d bytes at seq %d did not reach the client side; pieces:\n%s", d.Len, uint32(d.Seq), packets(pieces))
	}
	var total uint32
	for i, p := range pieces {
		if p.Len > 1500-20-20 {
			t.Errorf("piece %d carries %d bytes: more than the 1500-byte MTU allows", i, p.Len)
		}
		total += p.Len
	}
	t.Logf("copy of a %d-byte segment went out as %d pieces", d.Len, len(pieces))
	if len(pieces) < 2 || total != d.Len {
		t.Errorf("copy of %d bytes went out as %d pieces of %d bytes in all", d.Len, len(pieces), total)
	}
	later := tp.Client.Nstat(t)
	if later["TcpInCsumErrors"] != before["TcpInCsumErrors"] {
		t.Errorf("client TcpInCsumErrors went from %d to %d", before["TcpInCsumErrors"], later["TcpInCsumErrors"])
	}
	if st := r.q.Stats(); st.CopiesSent != 1 || st.CopiesFailed != 0 {
		t.Errorf("copies sent %d failed %d, want 1 and 0", st.CopiesSent, st.CopiesFailed)
	}
}

// TestDuplicateSynLocalMode: the queue runs on the client itself (local
// mode: OUTPUT and INPUT); the copy of its SYN carries InjectMark, so it
// goes out to the server without being queued again.
func TestDuplicateSynLocalMode(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		tp := netlabtest.NewTopology(t)
		intercept(t, tp.Client, nfq.Local)
		ln := tp.Server.Listen(t, "tcp", serverAddr(tp, v6))
		serve(t, ln, 1000)
		var mu sync.Mutex
		var synSeqs []seqnum.Value
		h := &fakeHandler{decide: func(seg *statetrack.Segment, _ int) rules.Verdict {
			if !onlySyn(seg) {
				return rules.Verdict{}
			}
			mu.Lock()
			synSeqs = append(synSeqs, seg.Seq)
			mu.Unlock()
			return rules.Verdict{Decision: rules.Decision{Action: rules.Duplicate, Copies: 1, After: 200 * time.Millisecond}}
		}}
		r := startQueueIn(t, tp.Client, h)
		serverSide := tp.Router.Capture(t, tp.RouterServerIf, "tcp port 8080")

		conn := dialServer(t, tp, v6)
		twoSyns := func(pkts []netlabtest.Packet) bool {
			n := 0
			for _, p := range pkts {
				if onlySyn(&p.Segment) {
					n++
				}
			}
			return n == 2
		}
		if !serverSide.WaitFor(5*time.Second, twoSyns) {
			t.Fatalf("want the SYN and its copy on the server side, got:\n%s", packets(serverSide.Packets()))
		}
		exchange(t, conn, 1000)
		settled(t, r.q)
		mu.Lock()
		defer mu.Unlock()
		if len(synSeqs) != 1 {
			t.Errorf("the queue saw %d SYNs %v, want 1: the copy was queued again", len(synSeqs), synSeqs)
		}
		if st := r.q.Stats(); st.CopiesSent != 1 {
			t.Errorf("copies sent %d, want 1", st.CopiesSent)
		}
	})
}
