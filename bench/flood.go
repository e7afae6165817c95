package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/trail"
	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

// The SYN flood workload: a raw-socket generator in the client namespace
// sends SYNs from spoofed sources in 198.18.0.0/15 to the server port, as
// fast as the machine allows, a bounded count within a bounded time, while
// a legitimate client connects one connection after the other. It runs
// without tcpchaos and with it (bench/flood.yaml: a small
// tracker.max-connections). The router routes the spoofed sources back to
// the client namespace, which owns none of them and drops the SYN-ACKs
// silently (no RST): the server's answers cross the router and tcpchaos
// like a real flood's.

// floodLimit bounds how long the generator sends.
const floodLimit = 20 * time.Second

// floodResult is what the flood role measured.
type floodResult struct {
	// Sent counts SYNs sent, SendErrors the sends the socket refused
	// (ENOBUFS, say), within Seconds.
	Sent, SendErrors int64
	Seconds          float64
	// Probe is the legitimate client's connects during the flood.
	Probe latencyResult `json:"probe"`
}

// flood sends n SYNs to addr (at most floodLimit) from spoofed sources
// through a raw socket, and connects to addr one connection after the
// other until the last SYN is sent.
func flood(addr string, n int, limit time.Duration) (floodResult, error) {
	var r floodResult
	dst, err := netip.ParseAddrPort(addr)
	if err != nil || !dst.Addr().Is4() {
		return r, fmt.Errorf("flood: %q: want an IPv4 address and port", addr)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW) // IP_HDRINCL
	if err != nil {
		return r, fmt.Errorf("flood: raw socket: %w", err)
	}
	defer unix.Close(fd)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			start := time.Now()
			conn, err := net.DialTimeout("tcp", addr, ioTimeout)
			if err != nil {
				r.Probe.fail(err)
				continue
			}
			r.Probe.Micros = append(r.Probe.Micros, float64(time.Since(start).Nanoseconds())/1e3)
			conn.Close()
		}
	})
	start := time.Now()
	r.Sent, r.SendErrors = sendSYNs(fd, dst, n, start.Add(min(limit, floodLimit)))
	r.Seconds = time.Since(start).Seconds()
	close(done)
	wg.Wait()
	return r, nil
}

// sendSYNs sends n SYNs to dst through the raw socket fd until deadline,
// and returns how many were sent and refused.
func sendSYNs(fd int, dst netip.AddrPort, n int, deadline time.Time) (sent, refused int64) {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	sa := &unix.SockaddrInet4{Addr: dst.Addr().As4()}
	var buf []byte
	for i := range n {
		if i%1024 == 0 && time.Now().After(deadline) {
			break
		}
		buf = appendSYN(buf[:0], rng, dst)
		if err := unix.Sendto(fd, buf, 0, sa); err != nil {
			refused++
			continue
		}
		sent++
	}
	return sent, refused
}

// appendSYN appends to b an IPv4 SYN to dst from a spoofed source and
// port, with a random sequence number, checksums set.
func appendSYN(b []byte, rng *rand.Rand, dst netip.AddrPort) []byte {
	seg := statetrack.Segment{
		Src: netip.AddrPortFrom(spoofedSource(rng), uint16(1024+rng.IntN(64000))), Dst: dst,
		Seq: seqnum.Value(rng.Uint32()), Flags: statetrack.SYN,
	}
	return decode.AppendRST(b, &seg) // any flags: a segment without payload or options
}

// floodSources is where the spoofed sources come from, floodKeepOut the
// subnets of the topology that they must not hit (the client's and the
// server's).
var (
	floodSources = netip.MustParsePrefix("198.18.0.0/15")
	floodKeepOut = []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("198.19.2.0/24")}
)

// spoofedSource returns a random address of floodSources outside
// floodKeepOut.
func spoofedSource(rng *rand.Rand) netip.Addr {
	base := floodSources.Addr().As4()
	size := uint32(1) << (32 - floodSources.Bits())
	for {
		v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
		v += rng.Uint32N(size)
		a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		if !slices.ContainsFunc(floodKeepOut, func(p netip.Prefix) bool { return p.Contains(a) }) {
			return a
		}
	}
}

// floodRun is one flood, without tcpchaos or with it.
type floodRun struct {
	result floodResult
	// serverPackets is the server's IpInReceives over the flood.
	serverPackets uint64
	// With tcpchaos: what it cost, its memory before the flood and after
	// it (Peak: the high-water mark), its Go heap over the run (gctrace),
	// and its summary's figures (-1 when missing): fullUnseen is what it
	// counted passing the full queue.
	cost                               cost
	before, after                      memory
	heap                               gcTrace
	unseen, synsSeen, tracked, evicted int64
	fullUnseen                         int64
}

// floodReport is the flood workload's runs, by round.
type floodReport struct {
	maxConns int64         // tracker.max-connections of bench/flood.yaml
	rounds   [][2]floodRun // [0] without tcpchaos, [1] with it
}

// floodConfig is the tcpchaos config of the flood.
const floodConfig = "flood.yaml"

// maxConnsRE finds tracker.max-connections in `tcpchaos validate`'s output.
var maxConnsRE = regexp.MustCompile(`max-connections (\d+)`)

// maxConnections returns the tracker.max-connections of the config cfg, as
// tcpchaos reads it.
func maxConnections(ctx context.Context, tcpchaos, cfg string) (int64, error) {
	out, err := exec.CommandContext(ctx, tcpchaos, "validate", "-c", cfg).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("tcpchaos validate -c %s: %w\n%s", cfg, err, out)
	}
	n := sumMatches(maxConnsRE, string(out))
	if n < 0 {
		return 0, fmt.Errorf("tcpchaos validate -c %s: no max-connections in\n%s", cfg, out)
	}
	return n, nil
}

// runFlood builds a lab of its own and floods it o.rounds times without
// and with tcpchaos, interleaved.
func runFlood(ctx context.Context, o options) (fr floodReport, err error) {
	if o.floodSYNs < 1 {
		return fr, fmt.Errorf("-flood-syns %d: want at least 1", o.floodSYNs)
	}
	l, err := openLab(ctx, o, "SYN flood", "-flood=false", "tcpchaos-bench-flood", "ip", "iptables", "iptables-save", "nstat")
	if err != nil {
		return fr, err
	}
	defer func() { err = errors.Join(err, l.close()) }()
	if err := l.routeSpoofed(); err != nil {
		return fr, err
	}
	if fr.maxConns, err = maxConnections(ctx, o.tcpchaos, filepath.Join(o.root, "bench", floodConfig)); err != nil {
		return fr, err
	}
	for round := range o.rounds {
		var rr [2]floodRun
		for i := range rr {
			if rr[i], err = l.floodOnce(ctx, i == 1); err != nil {
				return fr, fmt.Errorf("flood, round %d: %w", round+1, err)
			}
			res := rr[i].result
			fmt.Fprintf(os.Stderr, "bench: flood round %d, tcpchaos %-5v %d SYNs in %.2f s, probe connect p99 %.0f µs, %d failed\n",
				round+1, i == 1, res.Sent, res.Seconds, percentile(res.Probe.Micros, 99), res.Probe.Failed)
		}
		fr.rounds = append(fr.rounds, rr)
	}
	return fr, nil
}

// routeSpoofed makes the router accept the spoofed sources from the
// client's side (no reverse-path filter) and route the answers to them
// to the client namespace, which drops them.
func (l *lab) routeSpoofed() error {
	for _, s := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf." + l.tp.RouterClientIf + ".rp_filter"} {
		if err := l.tp.Router.Sysctl(s, "0"); err != nil {
			return err
		}
	}
	return l.tp.Router.IP(fmt.Sprintf("route add %s via %s dev %s", floodSources, l.tp.Client4, l.tp.RouterClientIf))
}

// floodOnce runs one flood, with tcpchaos on the router or without.
func (l *lab) floodOnce(ctx context.Context, withTcpchaos bool) (run floodRun, err error) {
	run.unseen, run.synsSeen, run.tracked, run.evicted, run.fullUnseen = -1, -1, -1, -1, -1
	if err := l.checkNoQueueRules(); err != nil {
		return run, err
	}
	var tool *process
	if withTcpchaos {
		// GODEBUG=gctrace=1: the Go heap at each GC on its stderr.
		argv := []string{"env", "GODEBUG=gctrace=1", l.opts.tcpchaos, "run", "-c", filepath.Join(l.opts.root, "bench", floodConfig), "--netns", l.tp.Router.Name}
		if tool, err = start(ctx, "tcpchaos", argv, "tcpchaos: intercepting", nil); err != nil {
			return run, err
		}
		defer func() {
			err = errors.Join(err, tool.stop(), l.checkNoQueueRules())
			out := tool.output()
			run.unseen, run.synsSeen = parseUnseen(out), sumMatches(synsSeenRE, out)
			run.tracked, run.evicted = sumMatches(trackedRE, out), sumMatches(evictedRE, out)
			run.fullUnseen, run.heap = sumMatches(fullUnseenRE, out), parseGCTrace(out)
		}()
		if run.before, err = readMemory(tool.pid()); err != nil {
			return run, err
		}
	}
	before, err := l.serverReceived()
	if err != nil {
		return run, err
	}
	m := meter{ns: l.tp.Router, pid: tool.pid()}
	if err := m.run(&run.cost, func() (int64, error) {
		err := l.client(ctx, &run.result, "-role", "flood", "-addr", l.addr, "-n", strconv.Itoa(l.opts.floodSYNs), "-d", floodLimit.String())
		return run.result.Sent, err
	}); err != nil {
		return run, err
	}
	after, err := l.serverReceived()
	if err != nil {
		return run, err
	}
	run.serverPackets = after - before
	if withTcpchaos {
		if run.after, err = readMemory(tool.pid()); err != nil {
			return run, err
		}
	}
	return run, nil
}

// serverReceived returns the server namespace's IpInReceives.
func (l *lab) serverReceived() (uint64, error) {
	m, err := l.tp.Server.Nstat(filepath.Join(l.tmp, "nstat-flood.history"))
	return m["IpInReceives"], err
}

var (
	synsSeenRE   = regexp.MustCompile(`(?m)^\s+syn\s+(\d+)$`)
	trackedRE    = regexp.MustCompile(`(\d+) tracked at the end`)
	evictedRE    = regexp.MustCompile(`(\d+) evicted`)
	fullUnseenRE = regexp.MustCompile(`(\d+) passed the full queue unseen`)
	// gcTraceRE reads a GODEBUG=gctrace=1 line's heap figures ("MB" is
	// MiB there): at the GC's start, end and the live heap, the goal,
	// stacks and globals.
	gcTraceRE = regexp.MustCompile(`(?m)^gc \d+ @.* (\d+)->(\d+)->(\d+) MB, (\d+) MB goal, (\d+) MB stacks, (\d+) MB globals`)
)

// gcTrace is what a run's gctrace lines say of its Go heap, in MiB: GCs
// is how many ran (0: none, the heap stayed under the runtime's first
// goal of 4 MiB, and the rest is 0); FirstLive the live heap after the
// first, Live after the last; Peak the largest heap at a GC's start or
// end, Goal the largest goal; Globals and Stacks the last figures.
type gcTrace struct {
	GCs                                          int
	FirstLive, Live, Peak, Goal, Globals, Stacks int64
}

// parseGCTrace reads the gctrace lines of out.
func parseGCTrace(out string) gcTrace {
	var g gcTrace
	for _, m := range gcTraceRE.FindAllStringSubmatch(out, -1) {
		var v [6]int64
		for i := range v {
			v[i], _ = strconv.ParseInt(m[i+1], 10, 64)
		}
		if g.GCs == 0 {
			g.FirstLive = v[2]
		}
		g.GCs++
		g.Peak, g.Goal = max(g.Peak, v[0], v[1]), max(g.Goal, v[3])
		g.Live, g.Stacks, g.Globals = v[2], v[4], v[5]
	}
	return g
}

// What a SYN flood can make tcpchaos keep, by part (statetrack's doc,
// internal/trail, internal/events): the bound of the live heap's growth.
const (
	// slotBytes is a tracker slot; slabPage slots are allocated at once;
	// indexBytes is the hash index's share per connection.
	slotBytes, slabPage, indexBytes = 152, 4096, 21
	// trailRing is the events a trail's ring starts with: a flood's
	// connection is evicted with 2 or 3 (its SYN, the SYN-ACK, perhaps a
	// retransmitted one); trailConnBytes the rest of a trail (its summary,
	// order list element and map entry).
	trailRing, trailConnBytes = 4, 320
)

// eventBytes is the size of one event, in a trail's ring and in the
// writer's buffer.
const eventBytes = int64(unsafe.Sizeof(events.Event{}))

// floodBound is what the flood may add to tcpchaos's live heap, by part,
// for a table of maxConns connections.
type floodBound struct {
	Slab, Trails, Events int64
}

func newFloodBound(maxConns int64) floodBound {
	pages := (maxConns + slabPage - 1) / slabPage
	return floodBound{
		Slab:   pages*slabPage*slotBytes + maxConns*indexBytes,
		Trails: min(maxConns, trail.DefaultConns) * (trailRing*eventBytes + trailConnBytes),
		Events: events.Buffer * eventBytes,
	}
}

// total is the sum of the parts.
func (b floodBound) total() int64 { return b.Slab + b.Trails + b.Events }

// heapBound is the largest Go heap the runtime lets grow before it
// collects (GOGC 100): the live heap of a run that starts at firstLive
// MiB and adds b, twice, plus globals and stacks (the goal counts them
// once), in MiB.
func (b floodBound) heapBound(g gcTrace) float64 {
	return 2*(float64(g.FirstLive)+float64(b.total())/(1<<20)) + float64(g.Globals+g.Stacks)
}

// synsUnseen is how many SYNs the generator and the probe sent that
// tcpchaos did not see (-1 when not known; never below 0).
func (f floodRun) synsUnseen() int64 {
	if f.synsSeen < 0 {
		return -1
	}
	sent := f.result.Sent + int64(len(f.result.Probe.Micros)) + f.result.Probe.Failed
	return max(sent-f.synsSeen, 0)
}

// renderFlood writes the SYN flood's figures.
func (r *report) renderFlood(b *strings.Builder, c *checks) {
	fr := r.flood
	fmt.Fprintf(b, "SYN flood: %d SYNs from spoofed sources in %s to port %d (raw socket in the client namespace, as fast as it goes, "+
		"at most %s), a legitimate client connecting one connection after the other meanwhile; tcpchaos with bench/%s "+
		"(tracker.max-connections %d). Median (min–max) over %d rounds:\n\n",
		r.opts.floodSYNs, floodSources, r.opts.port, floodLimit, floodConfig, fr.maxConns, len(fr.rounds))
	b.WriteString("| | without tcpchaos | with tcpchaos |\n|---|---:|---:|\n")
	row := func(name string, cell func(i int) string) {
		fmt.Fprintf(b, "| %s | %s | %s |\n", name, cell(0), cell(1))
	}
	each := func(i int, f func(floodRun) float64) []float64 {
		var xs []float64
		for _, rr := range fr.rounds {
			xs = append(xs, f(rr[i]))
		}
		return xs
	}
	total := func(i int, f func(floodRun) int64) (n int64) {
		for _, rr := range fr.rounds {
			n += f(rr[i])
		}
		return n
	}
	spreadRow := func(name string, prec int, f func(floodRun) float64) {
		row(name, func(i int) string { return summarize(each(i, f)).format(prec) })
	}
	tcpchaosRow := func(name string, f func(floodRun) string) {
		row(name, func(i int) string {
			if i == 0 {
				return "—"
			}
			return f(fr.rounds[len(fr.rounds)-1][1])
		})
	}
	spreadRow("SYNs sent per second", 0, func(f floodRun) float64 { return float64(f.result.Sent) / f.result.Seconds })
	row("SYNs sent / refused by the socket (total)", func(i int) string {
		return fmt.Sprintf("%d / %d", total(i, func(f floodRun) int64 { return f.result.Sent }), total(i, func(f floodRun) int64 { return f.result.SendErrors }))
	})
	spreadRow("packets received by the server (flood and probe), per SYN sent", 2, func(f floodRun) float64 { return float64(f.serverPackets) / float64(f.result.Sent) })
	spreadRow("legitimate connect() p50, µs", 0, func(f floodRun) float64 { return percentile(f.result.Probe.Micros, 50) })
	spreadRow("legitimate connect() p99, µs", 0, func(f floodRun) float64 { return percentile(f.result.Probe.Micros, 99) })
	row("legitimate connects made / failed (total)", func(i int) string {
		return fmt.Sprintf("%d / %d", total(i, func(f floodRun) int64 { return int64(len(f.result.Probe.Micros)) }), total(i, func(f floodRun) int64 { return f.result.Probe.Failed }))
	})
	spreadRow("packets queued per SYN sent", 2, func(f floodRun) float64 {
		if f.cost.Queued < 0 {
			return math.NaN()
		}
		return float64(f.cost.Queued) / float64(f.result.Sent)
	})
	spreadRow("CPU per crossing, µs", 1, func(f floodRun) float64 { return f.cost.cpuPerCrossing() })
	tcpchaosTotal := func(name string, f func(floodRun) int64) {
		row(name, func(i int) string {
			if i == 0 {
				return "—"
			}
			return fmt.Sprint(total(i, f))
		})
	}
	tcpchaosTotal("packets passed unseen with an id, the socket full, as tcpchaos counts them (total)", func(f floodRun) int64 { return f.unseen })
	tcpchaosTotal("packets passed the full queue unseen (SYN-ACKs too), as tcpchaos counts them: NFQUEUE rule counters − id_sequence (total)", func(f floodRun) int64 { return f.fullUnseen })
	tcpchaosTotal("SYNs sent that tcpchaos did not see, sent − seen by the generator's count (total)", floodRun.synsUnseen)
	tcpchaosRow("connections tracked at the end / evicted (last round)", func(f floodRun) string {
		return fmt.Sprintf("%d / %d", f.tracked, f.evicted)
	})
	mib := func(n int64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }
	tcpchaosRow("tcpchaos RSS before / peak / after, MiB (last round)", func(f floodRun) string {
		return fmt.Sprintf("%s / %s / %s", mib(f.before.RSS), mib(f.after.Peak), mib(f.after.RSS))
	})
	tcpchaosRow("Go heap (gctrace): GCs, live at the first / the last, peak, largest goal, globals, MiB (last round)", func(f floodRun) string {
		h := f.heap
		return fmt.Sprintf("%d: %d / %d, %d, %d, %d", h.GCs, h.FirstLive, h.Live, h.Peak, h.Goal, h.Globals)
	})
	var growth []float64
	for _, rr := range fr.rounds {
		growth = append(growth, float64(rr[1].after.Peak-rr[1].before.RSS)/(1<<20))
	}
	bd := newFloodBound(fr.maxConns)
	fmt.Fprintf(b, "\ntcpchaos's RSS growth over the flood (peak − before): %s MiB. What the flood may add to its live heap: "+
		"the tracker's slab %s MiB (%d-slot pages of %d bytes, and %d bytes of index per connection of max-connections), "+
		"the control socket's trails %s MiB (min(max-connections, %d) connections × (a %d-event ring of %d-byte events + %d bytes)), "+
		"the event writer's buffer %s MiB (%d events): %s MiB (every SYN's connection kept would be %s MiB in the slab alone). "+
		"The Go runtime lets its heap grow to the GC goal before it collects (GOGC 100): twice the live heap, plus globals and stacks, "+
		"and keeps the pages a while after, so the bound of the heap is 2 × (live heap at the first GC + %s MiB) + globals and stacks.\n",
		summarize(growth).format(1), mib(bd.Slab), slabPage, slotBytes, indexBytes,
		mib(bd.Trails), trail.DefaultConns, trailRing, eventBytes, trailConnBytes, mib(bd.Events), events.Buffer,
		mib(bd.total()), mib(int64(r.opts.floodSYNs)*(slotBytes+indexBytes)), mib(bd.total()))
	p99 := func(i int) spread {
		return summarize(each(i, func(f floodRun) float64 { return percentile(f.result.Probe.Micros, 99) }))
	}
	fmt.Fprintf(b, "Legitimate connect() p99 during the flood: %s µs with tcpchaos, %s µs without.\n\n", p99(1).format(0), p99(0).format(0))
	tracked := int64(-1)
	for _, rr := range fr.rounds {
		tracked = max(tracked, rr[1].tracked)
	}
	c.check(tracked >= 0 && tracked <= fr.maxConns, fmt.Sprintf("connections tracked at the end of the flood ≤ tracker.max-connections (%d)", fr.maxConns), fmt.Sprint(tracked))
	var counted, missing int64 // what tcpchaos counted passing unseen, the SYNs it did not see
	for _, rr := range fr.rounds {
		counted += max(rr[1].unseen, 0) + max(rr[1].fullUnseen, 0)
		missing += max(rr[1].synsUnseen(), 0)
	}
	c.check(counted >= missing, "tcpchaos counts what passed it unseen: its counts (socket full + queue full, every packet) ≥ the SYNs it did not see (sent − seen)",
		fmt.Sprintf("%d ≥ %d", counted, missing))
	worst, worstBound := int64(0), 0.0 // the round whose peak heap came closest to its bound
	for _, rr := range fr.rounds {
		h := rr[1].heap
		if bound := bd.heapBound(h); h.GCs > 0 && (worstBound == 0 || float64(h.Peak)-bound > float64(worst)-worstBound) {
			worst, worstBound = h.Peak, bound
		}
	}
	c.check(float64(worst) <= worstBound, "tcpchaos's Go heap stays within its bound over the flood (peak at a GC ≤ 2 × (live at the first GC + what the flood may add) + globals and stacks; no GC: under 4 MiB)",
		fmt.Sprintf("%d MiB ≤ %.1f MiB", worst, worstBound))
	b.WriteString("\n")
}
