package nfq

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	rulespkg "github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// fakeSender records the copies sent.
type fakeSender struct {
	sent [][]byte
	err  error
}

func (s *fakeSender) Send(pkt []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.sent = append(s.sent, append([]byte(nil), pkt...))
	return 1, nil
}

// scripted is a Handler that returns its queued verdicts in turn, then
// accept, and records what it is shown.
type scripted struct {
	next      []rulespkg.Verdict
	seen      []statetrack.Segment
	delivered []rulespkg.Verdict
	expired   []time.Time
	panicOn   int // panic on this Handle call (1-based), 0 never
	panicDel  bool
	calls     int
}

func (h *scripted) Handle(seg *statetrack.Segment, now time.Time) rulespkg.Verdict {
	h.calls++
	if h.calls == h.panicOn {
		panic("handler bug")
	}
	h.seen = append(h.seen, *seg)
	if len(h.next) == 0 {
		return rulespkg.Verdict{}
	}
	v := h.next[0]
	h.next = h.next[1:]
	return v
}

func (h *scripted) Deliver(v *rulespkg.Verdict, now time.Time) {
	if h.panicDel {
		panic("deliver bug")
	}
	h.delivered = append(h.delivered, *v)
}

func (h *scripted) Expire(now time.Time) { h.expired = append(h.expired, now) }

func (h *scripted) Quieted(uint64, time.Time) {}
func (h *scripted) Declined(uint64)           {}

// tcpSpec describes a test packet; build serializes it with gopacket.
type tcpSpec struct {
	v6                          bool
	seq                         uint32
	id                          uint16
	fin, syn, psh, ack, cwr, df bool
	payload                     []byte
	options                     []layers.TCPOption
	// reply swaps the endpoints (server to client); ackNum, when not 0,
	// replaces the acknowledgment number 77.
	reply  bool
	ackNum uint32
}

// build returns the packet as gopacket serializes it, with lengths and
// checksums computed.
func (s tcpSpec) build(t testing.TB) []byte {
	t.Helper()
	tcp := &layers.TCP{
		SrcPort: 40312, DstPort: 8080, Seq: s.seq, Ack: 77, Window: 501,
		FIN: s.fin, SYN: s.syn, PSH: s.psh, ACK: s.ack, CWR: s.cwr,
		Options: s.options,
	}
	if s.ackNum != 0 {
		tcp.Ack = s.ackNum
	}
	src4, dst4 := net.IPv4(198, 18, 1, 2), net.IPv4(198, 18, 2, 2)
	src6, dst6 := net.ParseIP("fd00:1::2"), net.ParseIP("fd00:2::2")
	if s.reply {
		tcp.SrcPort, tcp.DstPort = tcp.DstPort, tcp.SrcPort
		src4, dst4, src6, dst6 = dst4, src4, dst6, src6
	}
	var ip gopacket.SerializableLayer
	if s.v6 {
		ip6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, HopLimit: 63,
			SrcIP: src6, DstIP: dst6}
		if err := tcp.SetNetworkLayerForChecksum(ip6); err != nil {
			t.Fatal(err)
		}
		ip = ip6
	} else {
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 63, Id: s.id, Protocol: layers.IPProtocolTCP,
			SrcIP: src4, DstIP: dst4}
		if s.df {
			ip4.Flags = layers.IPv4DontFragment
		}
		if err := tcp.SetNetworkLayerForChecksum(ip4); err != nil {
			t.Fatal(err)
		}
		ip = ip4
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, tcp, gopacket.Payload(s.payload)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func payloadOf(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return p
}

var tsOption = []layers.TCPOption{
	{OptionType: layers.TCPOptionKindNop},
	{OptionType: layers.TCPOptionKindNop},
	{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 1, 0, 0, 0, 2, 0}},
}

type fixture struct {
	k    *fakeKernel
	s    *fakeSender
	h    *scripted
	c    *core
	t0   time.Time
	pkt  []byte
	syn  []byte
	udp4 []byte
}

func newFixture(t *testing.T, vs ...rulespkg.Verdict) *fixture {
	f := &fixture{k: newFakeKernel(), s: &fakeSender{}, h: &scripted{next: vs},
		t0: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	f.c = newCore(f.h, decode.NewParser(), newVerdictWriter(100, f.k), f.s, false, nil, slog.New(slog.DiscardHandler), nil)
	f.pkt = tcpSpec{ack: true, psh: true, seq: 5000, payload: payloadOf(300)}.build(t)
	f.syn = tcpSpec{syn: true, seq: 4999, options: tsOption}.build(t)
	f.udp4 = udpPacket(t)
	return f
}

func udpPacket(t *testing.T) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IPv4(198, 18, 1, 2), DstIP: net.IPv4(198, 18, 2, 2)}
	udp := &layers.UDP{SrcPort: 5353, DstPort: 8080}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, udp, gopacket.Payload("hello"))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (f *fixture) at(ms int) time.Time { return f.t0.Add(time.Duration(ms) * time.Millisecond) }

func (f *fixture) send(id uint32, pkt []byte, ms int) {
	f.packetAt(id, pkt, len(pkt), f.at(ms))
}

// packetAt queues one packet (of which pkt was copied) and ends the burst.
func (f *fixture) packetAt(id uint32, pkt []byte, wireLen int, now time.Time) {
	f.k.enqueue(id)
	f.c.packet(id, pkt, wireLen, 0, now)
	f.c.endBurst(true)
}

func obs(nth uint32) statetrack.Observation { return statetrack.Observation{Nth: nth} }

func TestAcceptPassesDecodedSegment(t *testing.T) {
	f := newFixture(t)
	f.send(1, f.pkt, 0)
	if v := f.k.verdict(t, 1); v != nfqueue.NfAccept {
		t.Fatalf("verdict %d, want accept", v)
	}
	if len(f.h.seen) != 1 {
		t.Fatalf("handler saw %d segments", len(f.h.seen))
	}
	seg := f.h.seen[0]
	if seg.Seq != 5000 || seg.Len != 300 || seg.Dst.Port() != 8080 || seg.Src.Addr().String() != "198.18.1.2" ||
		seg.Flags != statetrack.ACK|statetrack.PSH {
		t.Errorf("segment %+v", seg)
	}
	if len(f.h.delivered) != 0 {
		t.Errorf("Deliver called %d times for an accepted packet", len(f.h.delivered))
	}
	if s := f.c.c.accepted.Load(); s != 1 {
		t.Errorf("accepted %d", s)
	}
}

func TestDrop(t *testing.T) {
	f := newFixture(t, rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Drop}})
	f.send(7, f.syn, 0)
	f.send(8, f.syn, 1000)
	if v := f.k.verdict(t, 7); v != nfqueue.NfDrop {
		t.Errorf("first verdict %d, want drop", v)
	}
	if v := f.k.verdict(t, 8); v != nfqueue.NfAccept {
		t.Errorf("second verdict %d, want accept", v)
	}
	if d, a := f.c.c.dropped.Load(), f.c.c.accepted.Load(); d != 1 || a != 1 {
		t.Errorf("dropped %d accepted %d, want 1 and 1", d, a)
	}
}

// orderedSender records the RSTs sent and whether packet 1's verdict had
// reached the kernel by then.
type orderedSender struct {
	k           *fakeKernel
	sent        []statetrack.Segment
	afterAccept bool
}

func (s *orderedSender) Send(pkt []byte) (int, error) {
	var seg statetrack.Segment
	if err := decode.NewParser().Decode(pkt, &seg); err != nil {
		return 0, err
	}
	s.sent = append(s.sent, seg)
	s.afterAccept = s.k.has(1)
	return 1, nil
}

// TestResetSendsRSTsAfterEarlierVerdicts: a reset drops its packet and
// sends each RST through the raw socket, once the verdicts batched before
// it were written (packet 1, accepted in the same burst, goes first).
func TestResetSendsRSTsAfterEarlierVerdicts(t *testing.T) {
	c, s := netip.MustParseAddrPort("198.18.1.2:40312"), netip.MustParseAddrPort("198.18.2.2:8080")
	reset := rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Reset, Reset: rulespkg.Both}}
	reset.Obs.From, reset.Obs.Seg = statetrack.Client, statetrack.Segment{Src: c, Dst: s, Seq: 5, Ack: 77, Flags: statetrack.ACK}
	f := newFixture(t, rulespkg.Verdict{}, reset)
	want := []statetrack.Segment{{Src: s, Dst: c, Seq: 77, Flags: statetrack.RST}, {Src: c, Dst: s, Seq: 5, Flags: statetrack.RST}}
	os := &orderedSender{k: f.k}
	f.c.inj = os
	for id := uint32(1); id <= 2; id++ {
		f.k.enqueue(id)
		f.c.packet(id, f.syn, len(f.syn), 0, f.at(0))
	}
	f.c.endBurst(true)
	if v := f.k.verdict(t, 2); v != nfqueue.NfDrop {
		t.Errorf("reset packet's verdict %d, want drop", v)
	}
	if len(os.sent) != 2 || os.sent[0] != want[0] || os.sent[1] != want[1] {
		t.Errorf("RSTs sent %+v, want %+v", os.sent, want)
	}
	if !os.afterAccept {
		t.Error("RSTs sent before the earlier packet's verdict was written")
	}
	if n := f.c.c.resetsSent.Load(); n != 2 {
		t.Errorf("resets sent counted %d, want 2", n)
	}
}

func TestDecodeFailureAcceptsWithoutHandler(t *testing.T) {
	f := newFixture(t, rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Drop}})
	f.send(1, f.udp4, 0)
	f.send(2, []byte{0x45, 0}, 0)
	f.packetAt(3, nil, 0, f.at(0)) // no payload attribute
	for id := uint32(1); id <= 3; id++ {
		if v := f.k.verdict(t, id); v != nfqueue.NfAccept {
			t.Errorf("packet %d: verdict %d, want accept", id, v)
		}
	}
	if f.h.calls != 0 {
		t.Errorf("handler called %d times", f.h.calls)
	}
	if n := f.c.c.decodeFailures.Load(); n != 3 {
		t.Errorf("decode failures %d, want 3", n)
	}
}

func TestHandlerPanicAcceptsAndContinues(t *testing.T) {
	f := newFixture(t, rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Drop}})
	f.h.panicOn = 1
	f.send(1, f.syn, 0)
	f.send(2, f.syn, 1) // the mutex must have been released
	if v := f.k.verdict(t, 1); v != nfqueue.NfAccept {
		t.Errorf("panicking packet: verdict %d, want accept", v)
	}
	if v := f.k.verdict(t, 2); v != nfqueue.NfDrop {
		t.Errorf("next packet: verdict %d, want drop", v)
	}
	if n := f.c.c.handlerPanics.Load(); n != 1 {
		t.Errorf("panics %d, want 1", n)
	}
}

func TestDelayHoldsOnlyThatPacket(t *testing.T) {
	f := newFixture(t, rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Delay, Hold: 300 * time.Millisecond}, Obs: obs(1)})
	f.send(1, f.syn, 0)
	f.send(2, f.pkt, 1)
	if f.k.has(1) {
		t.Fatal("delayed packet got its verdict at once")
	}
	if v := f.k.verdict(t, 2); v != nfqueue.NfAccept {
		t.Fatalf("packet behind the delayed one: verdict %d, want accept at once", v)
	}
	next, ok := f.c.fire(f.at(299))
	if !ok || !next.Equal(f.at(300)) {
		t.Fatalf("next deadline %v %v, want %v", next, ok, f.at(300))
	}
	if f.k.has(1) || len(f.h.delivered) != 0 {
		t.Fatal("released before its hold")
	}
	if _, ok := f.c.fire(f.at(300)); ok {
		t.Error("entries left after the release")
	}
	if v := f.k.verdict(t, 1); v != nfqueue.NfAccept {
		t.Errorf("released verdict %d, want accept", v)
	}
	if len(f.h.delivered) != 1 || f.h.delivered[0].Obs.Nth != 1 {
		t.Errorf("delivered %+v, want the delayed verdict once", f.h.delivered)
	}
	if d, h := f.c.x.Stats().Delayed, f.c.x.Stats().Held; d != 1 || h != 0 {
		t.Errorf("delayed %d held %d", d, h)
	}
}

func TestHeldReleasedByDeadlineThenArrival(t *testing.T) {
	d := func(ms int, nth uint32) rulespkg.Verdict {
		return rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Delay, Hold: time.Duration(ms) * time.Millisecond}, Obs: obs(nth)}
	}
	f := newFixture(t, d(500, 1), d(100, 2), d(300, 3), d(200, 4), d(100, 5))
	for id := uint32(1); id <= 5; id++ {
		f.send(id, f.syn, 0)
	}
	f.c.fire(f.at(1000))
	f.k.mu.Lock()
	got := append([]uint32(nil), f.k.order...)
	f.k.mu.Unlock()
	want := []uint32{2, 5, 4, 3, 1}
	if !slicesEqual(got, want) {
		t.Errorf("release order %v, want %v", got, want)
	}
}

func slicesEqual(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDuplicateSendsCopiesLater(t *testing.T) {
	f := newFixture(t, rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Duplicate, Copies: 2, After: 500 * time.Millisecond}, Obs: obs(3)})
	buf := append([]byte(nil), f.syn...)
	f.packetAt(1, buf, len(buf), f.at(0))
	for i := range buf { // the netlink buffer is reused for the next message
		buf[i] = 0xff
	}
	if v := f.k.verdict(t, 1); v != nfqueue.NfAccept {
		t.Fatalf("original: verdict %d, want accept at once", v)
	}
	f.c.fire(f.at(499))
	if len(f.s.sent) != 0 {
		t.Fatal("copies sent early")
	}
	f.c.fire(f.at(500))
	if len(f.s.sent) != 2 {
		t.Fatalf("%d copies sent, want 2", len(f.s.sent))
	}
	for i, c := range f.s.sent {
		if !bytes.Equal(c, f.syn) {
			t.Errorf("copy %d differs from the original packet", i)
		}
	}
	if len(f.h.delivered) != 2 || f.h.delivered[1].Obs.Nth != 3 {
		t.Errorf("delivered %d times, want 2", len(f.h.delivered))
	}
	if s := f.c.x.Stats().CopiesSent; s != 2 {
		t.Errorf("copies sent %d", s)
	}
}

func TestDuplicateSendFailureNotDelivered(t *testing.T) {
	f := newFixture(t, rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Duplicate, Copies: 3, After: time.Second}})
	f.s.err = errors.New("no route")
	f.send(1, f.syn, 0)
	f.c.fire(f.at(1000))
	if len(f.h.delivered) != 0 {
		t.Errorf("Deliver called %d times for copies not sent", len(f.h.delivered))
	}
	if n := f.c.x.Stats().CopiesFailed; n != 3 {
		t.Errorf("copies failed %d, want 3", n)
	}
}

func TestDuplicateOfPartialCopySkipped(t *testing.T) {
	f := newFixture(t, rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Duplicate, Copies: 1, After: time.Second}})
	f.packetAt(1, f.pkt[:80], len(f.pkt), f.at(0)) // headers only
	if v := f.k.verdict(t, 1); v != nfqueue.NfAccept {
		t.Fatalf("verdict %d, want accept", v)
	}
	if len(f.h.seen) != 1 || f.h.seen[0].Len != 300 {
		t.Fatalf("segment from a partial copy: %+v", f.h.seen)
	}
	if _, ok := f.c.fire(f.at(2000)); ok || len(f.s.sent) != 0 {
		t.Errorf("copy of a partial packet scheduled or sent")
	}
	if n := f.c.x.Stats().CopiesSkipped; n != 1 {
		t.Errorf("copies skipped %d, want 1", n)
	}
}

func TestStopReleasesHeldAndCancelsCopies(t *testing.T) {
	f := newFixture(t,
		rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Delay, Hold: time.Hour}, Obs: obs(1)},
		rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Duplicate, Copies: 4, After: time.Hour}},
		rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Drop}})
	f.send(1, f.syn, 0)
	f.send(2, f.syn, 0)
	f.c.stop(f.at(10))
	if v := f.k.verdict(t, 1); v != nfqueue.NfAccept {
		t.Errorf("held packet: verdict %d, want accept", v)
	}
	if len(f.h.delivered) != 1 || f.h.delivered[0].Obs.Nth != 1 {
		t.Errorf("delivered %+v, want the held packet", f.h.delivered)
	}
	f.send(3, f.syn, 20) // the handler would drop it
	if v := f.k.verdict(t, 3); v != nfqueue.NfAccept {
		t.Errorf("packet after stop: verdict %d, want accept", v)
	}
	if f.h.calls != 2 {
		t.Errorf("handler called %d times, want 2 (not after stop)", f.h.calls)
	}
	f.c.fire(f.at(1e7))
	if len(f.s.sent) != 0 {
		t.Errorf("%d copies sent after stop", len(f.s.sent))
	}
	if n := f.c.x.Stats().CopiesCancelled; n != 4 {
		t.Errorf("copies cancelled %d, want 4", n)
	}
}

func TestDeliverPanicCounted(t *testing.T) {
	f := newFixture(t, rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Delay, Hold: time.Millisecond}})
	f.h.panicDel = true
	f.send(1, f.syn, 0)
	f.c.fire(f.at(1))
	if v := f.k.verdict(t, 1); v != nfqueue.NfAccept {
		t.Errorf("verdict %d, want accept", v)
	}
	if n := f.c.c.handlerPanics.Load(); n != 1 {
		t.Errorf("panics %d, want 1", n)
	}
	f.send(2, f.syn, 2) // not deadlocked
	f.k.verdict(t, 2)
}

// TestExactlyOneVerdict drives a random mix of actions, releases and a
// stop, and checks that every packet gets exactly one verdict.
func TestExactlyOneVerdict(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var vs []rulespkg.Verdict
	const n = 2000
	for range n {
		a := rulespkg.ActionType(r.IntN(4))
		vs = append(vs, rulespkg.Verdict{Decision: rulespkg.Decision{Action: a, Hold: time.Duration(r.IntN(1000)) * time.Millisecond, Copies: uint32(r.IntN(3)), After: time.Duration(r.IntN(1000)) * time.Millisecond}})
	}
	f := newFixture(t, vs...)
	f.h.panicOn = 17
	for i := range n {
		pkt := f.syn
		if i%50 == 0 {
			pkt = f.udp4
		}
		f.send(uint32(i+1), pkt, i)
		if i%10 == 0 {
			f.c.fire(f.at(i))
		}
	}
	f.c.stop(f.at(n))
	for id := uint32(1); id <= n; id++ {
		f.k.verdict(t, id)
	}
	c, x := &f.c.c, f.c.x.Stats()
	if got := c.accepted.Load() + c.dropped.Load() + x.Delayed; got != n {
		t.Errorf("accepted+dropped+delayed = %d, want %d", got, n)
	}
	if x.Held != 0 {
		t.Errorf("%d still held", x.Held)
	}
}

func TestExpire(t *testing.T) {
	f := newFixture(t)
	f.c.expire(f.at(5))
	if len(f.h.expired) != 1 || !f.h.expired[0].Equal(f.at(5)) {
		t.Errorf("Expire calls %v", f.h.expired)
	}
}

// TestScheduleWakesForEarlierDeadline runs the timer goroutine on the real
// clock: an entry pushed while it sleeps toward a later deadline is
// released without waiting for that deadline.
func TestScheduleWakesForEarlierDeadline(t *testing.T) {
	f := newFixture(t,
		rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Delay, Hold: time.Hour}},
		rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Delay, Hold: time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.c.schedule(ctx, time.Now) })
	f.packetAt(1, f.syn, len(f.syn), time.Now())
	f.packetAt(2, f.syn, len(f.syn), time.Now())
	deadline := time.After(10 * time.Second)
	for !f.k.has(2) {
		select {
		case <-f.k.changed:
		case <-deadline:
			t.Fatal("the short hold was not released: the timer goroutine was not woken")
		}
	}
	cancel()
	wg.Wait()
	if f.k.has(1) {
		t.Error("the hour-long hold was released")
	}
}

func TestPacketPathAllocs(t *testing.T) {
	f := newFixture(t)
	f.c.w.out = &countingKernel{}
	run := func() {
		f.c.packet(1, f.pkt, len(f.pkt), 0, f.t0)
		f.c.endBurst(true)
	}
	if n := testing.AllocsPerRun(1000, run); n != 0 {
		t.Errorf("accept path allocates %.1f times per packet", n)
	}
	f.c.h = dropAll{}
	if n := testing.AllocsPerRun(1000, run); n != 0 {
		t.Errorf("drop path allocates %.1f times per packet", n)
	}
}

// TestSteadyStateAllocs runs the whole packet path of an established
// connection, as the reader does: a netlink message parsed, the packet
// decoded, tracked by a real pipeline, decided by a control-only rule set,
// its verdict (marked, quiet) written.
func TestSteadyStateAllocs(t *testing.T) {
	c, msgs := steadyState(t)
	c.w.latency = &latencyHistogram{} // timed verdicts (run --metrics)
	k := c.w.out.(*countingKernel)
	var m packetMsg
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, b := range msgs[:3] { // the handshake: creates the entry
		c.messages(b, &m, now)
		c.endBurst(true)
	}
	data := msgs[3]
	if n := testing.AllocsPerRun(1000, func() {
		c.messages(data, &m, now)
		c.endBurst(true)
	}); n != 0 {
		t.Errorf("steady state allocates %.1f times per packet", n)
	}
	if k.msgs != 1004 || c.c.accepted.Load() != 1004 { // AllocsPerRun runs once more to warm up
		t.Errorf("%d verdict messages, %d accepted, want 1004 each", k.msgs, c.c.accepted.Load())
	}
	if k.last.mark != VerdictMark|QuietMark || k.last.id != 4 || k.last.verdict != verdictAccept {
		t.Errorf("last verdict %+v, want accept of packet 4 with the verdict and quiet marks", k.last)
	}
	if l := c.w.latency.snapshot(); l.Count() != 1004 {
		t.Errorf("verdict latency histogram holds %d verdicts, want 1004", l.Count())
	}
}

// steadyState returns a core around a real pipeline with quiet
// connections, and the packet messages of a handshake and one data segment.
func steadyState(t testing.TB) (*core, [][]byte) {
	set := rulespkg.Compile([]rulespkg.Rule{
		{Name: "final-ack", Match: rulespkg.Match{Packets: []statetrack.Kind{statetrack.FinalAck}}, Action: rulespkg.Action{Type: rulespkg.Drop}, Probability: 1, Limit: 1},
	})
	p := pipeline.New(statetrack.Config{ServerPorts: []uint16{8080}}, set, 1, nil)
	if !p.AllowQuiet() {
		t.Fatal("control-only rules refused quiet")
	}
	c := newCore(p, decode.NewParser(), newVerdictWriter(100, &countingKernel{}), &fakeSender{}, true, nil, slog.New(slog.DiscardHandler), nil)
	var msgs [][]byte
	for i, spec := range []tcpSpec{
		{syn: true, seq: 99, options: tsOption},
		{syn: true, ack: true, reply: true, seq: 299, ackNum: 100, options: tsOption},
		{ack: true, seq: 100, ackNum: 300, options: tsOption},
		{ack: true, psh: true, seq: 100, ackNum: 300, options: tsOption, payload: payloadOf(1400)},
	} {
		msgs = append(msgs, packetMessage(uint32(i+1), 0, spec.build(t), 0))
	}
	return c, msgs
}

type dropAll struct{}

func (dropAll) Handle(*statetrack.Segment, time.Time) rulespkg.Verdict {
	return rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Drop}}
}
func (dropAll) Deliver(*rulespkg.Verdict, time.Time) {}
func (dropAll) Quieted(uint64, time.Time)            {}
func (dropAll) Declined(uint64)                      {}
func (dropAll) Expire(time.Time)                     {}

// BenchmarkPacketPath measures the per-packet path without the kernel:
// decode, Handle (a drop), verdict.
func BenchmarkPacketPath(b *testing.B) {
	pkt := tcpSpec{ack: true, payload: payloadOf(1400), options: tsOption}.build(b)
	c := newCore(dropAll{}, decode.NewParser(), newVerdictWriter(100, &countingKernel{}), &fakeSender{}, false, nil, slog.New(slog.DiscardHandler), nil)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		c.packet(1, pkt, len(pkt), 0, now)
		c.endBurst(true)
	}
}

// BenchmarkSteadyState measures the whole path of an established
// connection's packet: message parse, decode, tracker, rules, marked
// verdict, in bursts of 32 packets (one verdict write per burst), with
// and without the verdict latency histogram (Options.TimeVerdicts).
func BenchmarkSteadyState(b *testing.B) {
	b.Run("untimed", func(b *testing.B) { benchmarkSteadyState(b, false) })
	b.Run("timed", func(b *testing.B) { benchmarkSteadyState(b, true) })
}

func benchmarkSteadyState(b *testing.B, timed bool) {
	c, msgs := steadyState(b)
	if timed {
		c.w.latency = &latencyHistogram{}
	}
	var m packetMsg
	now := time.Now()
	for _, msg := range msgs[:3] {
		c.messages(msg, &m, now)
	}
	c.endBurst(true)
	data := msgs[3]
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		c.messages(data, &m, now)
		if n++; n%32 == 0 {
			c.endBurst(true)
		}
	}
}

// TestQuietedOnlyWhenTheMarkIsWritten: the tracker hears that a connection
// went quiet only when a verdict carrying QuietMark was written, not for
// every Verdict.Quiet the pipeline proposed.
func TestQuietedOnlyWhenTheMarkIsWritten(t *testing.T) {
	c, msgs := steadyState(t)
	k := c.w.out.(*countingKernel)
	quieted := func() uint64 { return c.h.(*pipeline.Pipeline).Summary().Tracker.Quieted }
	var m packetMsg
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, b := range msgs[:3] { // the handshake-ack, read dry, goes quiet
		c.messages(b, &m, now)
		c.endBurst(true)
	}
	if q := quieted(); q != 1 || k.last.mark&QuietMark == 0 {
		t.Fatalf("after the handshake: quieted %d, last mark %#x; want 1 and QuietMark", q, k.last.mark)
	}
	c.messages(msgs[3], &m, now) // wakes the connection; the burst was not read dry
	c.endBurst(false)
	if q := quieted(); q != 1 || k.last.mark&QuietMark != 0 {
		t.Errorf("burst not read dry: quieted %d, last mark %#x; want still 1 and no QuietMark", q, k.last.mark)
	}
	c.messages(msgs[3], &m, now)
	c.endBurst(true)
	if q := quieted(); q != 2 || k.last.mark&QuietMark == 0 {
		t.Errorf("burst read dry: quieted %d, last mark %#x; want 2 and QuietMark", q, k.last.mark)
	}
}

// TestQuietCloseInOneBurst: a first FIN and the ACK of it read in one
// burst both carry QuietMark (after a first FIN the kernel takes the bit
// from the FIN's own verdict only), and the tracker hears that the
// connection went quiet; in a burst not read dry neither carries it.
func TestQuietCloseInOneBurst(t *testing.T) {
	for _, drained := range []bool{true, false} {
		set := rulespkg.Compile([]rulespkg.Rule{
			{Name: "final-ack", Match: rulespkg.Match{Packets: []statetrack.Kind{statetrack.FinalAck}}, Action: rulespkg.Action{Type: rulespkg.Drop}, Probability: 1, Limit: 1},
		})
		p := pipeline.New(statetrack.Config{ServerPorts: []uint16{8080}}, set, 1, nil)
		p.AllowQuiet()
		if got := p.AllowQuietPhases(pipeline.QuietPhases{Close: true}); !got.Close {
			t.Fatal("a final-ack rule kept the close from going quiet")
		}
		k := newFakeKernel()
		c := newCore(p, decode.NewParser(), newVerdictWriter(100, k), &fakeSender{}, true, nil, slog.New(slog.DiscardHandler), nil)
		var m packetMsg
		now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		for i, spec := range []tcpSpec{
			{syn: true, seq: 99},
			{syn: true, ack: true, reply: true, seq: 299, ackNum: 100},
			{ack: true, seq: 100, ackNum: 300},
			{fin: true, ack: true, seq: 100, ackNum: 300},
			{ack: true, reply: true, seq: 300, ackNum: 101},
		} {
			id := uint32(i + 1)
			k.enqueue(id)
			c.messages(packetMessage(id, 0, spec.build(t), 0), &m, now)
			if id != 4 { // the FIN and its ACK in one burst
				c.endBurst(drained || id < 4)
			}
		}
		quieted := p.Summary().Tracker.Quieted
		for id := uint32(4); id <= 5; id++ {
			k.verdict(t, id)
			if got := k.marks[id]&QuietMark != 0; got != drained {
				t.Errorf("drained %t: packet %d carries QuietMark: %t", drained, id, got)
			}
		}
		if want := map[bool]uint64{true: 2, false: 1}[drained]; quieted != want {
			t.Errorf("drained %t: quieted %d times, want %d (the third ACK's data phase, then the close)", drained, quieted, want)
		}
	}
}

func TestDoIsSerializedWithTheHandler(t *testing.T) {
	f := newFixture(t)
	q := &Queue{core: f.c}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			f.send(uint32(i+1), f.pkt, i)
		}
	}()
	seen := 0
	for range 200 {
		q.Do(func() { seen = len(f.h.seen) }) // the race detector checks the serialization
	}
	<-done
	q.Do(func() { seen = len(f.h.seen) })
	if seen != 200 {
		t.Errorf("handler saw %d packets, want 200", seen)
	}
}
