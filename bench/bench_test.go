package main

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/internal/replay"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

func TestParseBenchOutput(t *testing.T) {
	out := `goos: linux
pkg: github.com/tcpchaos/tcpchaos/statetrack
BenchmarkObserveEstablished 	 9127390	       131.2 ns/op	       0 B/op	       0 allocs/op
BenchmarkMillionConnections-2 	       1	1203456789 ns/op	       142.5 bytes/conn	200000000 B/op	   40 allocs/op
BenchmarkDecide/syn-ack 	 1000	 12.5 ns/op
PASS
ok  	github.com/tcpchaos/tcpchaos/statetrack	3.1s
`
	got, err := parseBenchOutput(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []benchLine{
		{"BenchmarkObserveEstablished", map[string]float64{"ns/op": 131.2, "B/op": 0, "allocs/op": 0}},
		{"BenchmarkMillionConnections", map[string]float64{"ns/op": 1203456789, "bytes/conn": 142.5, "B/op": 200000000, "allocs/op": 40}},
		{"BenchmarkDecide/syn-ack", map[string]float64{"ns/op": 12.5}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].name != want[i].name || len(got[i].metrics) != len(want[i].metrics) {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
			continue
		}
		for unit, v := range want[i].metrics {
			if got[i].metrics[unit] != v {
				t.Errorf("line %d %s: %v, want %v", i, unit, got[i].metrics[unit], v)
			}
		}
	}
	if _, err := parseBenchOutput("BenchmarkX 10 12.5 ns/op 7\n"); err == nil {
		t.Error("a value without a unit was accepted")
	}
}

func TestParseUnseen(t *testing.T) {
	out := "queue: 10 received; kernel: 12 queued, 2 passed unseen (fail-open)\nqueue: 3 received; kernel: 3 queued, 0 passed unseen (fail-open)\n"
	if got := parseUnseen(out); got != 2 {
		t.Errorf("parseUnseen = %d, want 2", got)
	}
	if got := parseUnseen("queue: 10 received\n"); got != -1 {
		t.Errorf("parseUnseen without the figure = %d, want -1", got)
	}
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want string
	}{
		{nil, "—"},
		{[]float64{2.5}, "2.5"},
		{[]float64{3, 1, 2}, "2.0 (1.0–3.0)"},
		{[]float64{2, 2}, "2.0"},
		{[]float64{2.01, 1.99, 2}, "2.0"},
		{[]float64{4, 1, 2, 3}, "2.5 (1.0–4.0)"},
	} {
		if got := summarize(tc.xs).format(1); got != tc.want {
			t.Errorf("summarize(%v) = %q, want %q", tc.xs, got, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	xs := make([]float64, 200)
	for i := range xs {
		xs[i] = float64(200 - i) // 200 … 1
	}
	if got := percentile(xs, 50); got != 100 {
		t.Errorf("p50 = %v, want 100", got)
	}
	if got := percentile(xs, 99); got != 198 {
		t.Errorf("p99 = %v, want 198", got)
	}
	if got := percentile(xs, 100); got != 200 {
		t.Errorf("p100 = %v, want 200", got)
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of nothing is not NaN")
	}
}

func TestFormatCount(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 123456.4: "123,456", 3_210_000: "3.21 M", math.NaN(): "—"} {
		if got := formatCount(v); got != want {
			t.Errorf("formatCount(%v) = %q, want %q", v, got, want)
		}
	}
}

// TestSynthCaptureReplays checks that every synthetic connection is a
// whole, well-formed connection to the tracker: the kinds come out in the
// expected numbers and every connection ends in TIME_WAIT / CLOSED.
func TestSynthCaptureReplays(t *testing.T) {
	path := filepath.Join(t.TempDir(), "synth.pcap")
	const conns = 7
	n, err := synthCapture(path, conns*synthPerConn-5, 3) // rounded up to whole connections
	if err != nil {
		t.Fatal(err)
	}
	if n != conns*synthPerConn {
		t.Fatalf("wrote %d packets, want %d", n, conns*synthPerConn)
	}
	in, err := capture.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p := pipeline.New(statetrack.Config{}, rules.Compile(nil), 1, nil)
	counts, err := replay.Run(in, nil, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Frames != uint64(n) || counts.TCP != uint64(n) {
		t.Fatalf("replayed %+v, want %d TCP frames", counts, n)
	}
	s := p.Summary()
	if s.Tracker.Connections != conns || s.Tracker.Midstream != 0 {
		t.Errorf("tracker saw %d connections (%d midstream), want %d whole ones", s.Tracker.Connections, s.Tracker.Midstream, conns)
	}
	want := map[statetrack.Kind]uint64{
		statetrack.Syn: 1, statetrack.SynAck: 1, statetrack.HandshakeAck: 1, statetrack.Data: 6,
		statetrack.Ack: 7, statetrack.Fin: 2, statetrack.FinAck: 1, statetrack.FinalAck: 1,
	}
	for k, per := range want {
		if got := s.Stats.Packets[k]; got != per*conns {
			t.Errorf("%s packets: %d, want %d", k, got, per*conns)
		}
	}
}

// TestRenderCountsMissedTargets renders a two-round report in which
// tcpchaos keeps up with direct except for connect() p99, the data rule's
// short connections/s and one RST.
func TestRenderCountsMissedTargets(t *testing.T) {
	run := func(gbits, cps, connectUS float64, rsts uint64) liveRun {
		micros := make([]float64, 100)
		for i := range micros {
			micros[i] = connectUS
		}
		micros[99] = connectUS * 100 // the p100; p99 is micros[98]
		micros[98] = connectUS * 50
		return liveRun{
			bulk:     bulkResult{Bytes: int64(gbits * 1e9 / 8), Seconds: 1},
			conns:    connsResult{OK: int64(cps), Seconds: 1},
			latency:  latencyResult{Micros: micros, TTFB: micros},
			counters: map[string]uint64{"TcpOutRsts": rsts},
			unseen:   0,
		}
	}
	round := [numColumns]liveRun{
		direct:      run(10, 10000, 20, 0),
		control:     run(9.8, 9000, 40, 0),
		dataRule:    run(8, 6000, 50, 1),
		dataMetrics: run(7.9, 5900, 50, 0),
		idleRule:    run(7, 4500, 45, 0),
		reference:   run(0.3, 2000, 180, 0),
		eventsOn:    run(9.7, 8500, 40, 0),
		toxiproxy:   run(2, 1500, 30, 0),
	}
	round[control].costs[connsLoad] = cost{Queued: 63000, CPU: 0.63, Conns: 9000}
	round[toxiproxy].costs[connsLoad] = cost{Queued: -1, CPU: 0.45, Conns: 1500}
	var all []column
	for col := range numColumns {
		all = append(all, col)
	}
	r := &report{opts: options{rounds: 2, port: 8080, columns: all}, machine: "test", live: [][numColumns]liveRun{round, round}}
	text, missed := r.render()
	// Missed: p99 added (control: 2000−1000 = 1000 µs; data rule and
	// data rule with metrics: 1500 µs), the data rule's short
	// connections/s (0.60) and its RST.
	if missed != 5 {
		t.Errorf("missed %d targets, want 5:\n%s", missed, text)
	}
	assertContains(t, text,
		"| bulk TCP, Gbit/s | 10.00 | 9.80 | 8.00 | 7.90 | 7.00 | 0.30 | 9.70 | 2.00 |",
		"- (idle rule, every packet queued: bulk 0.71, short connections/s 0.50 of the control config's; connect() p50 adds 25 µs)",
		"- ✓ bulk throughput, data rule, --metrics / data rule ≥ 0.9: 0.99",
		"| metrics scrapes (failed), total | — | — | — | 0 (0) | — | — | — | — |",
		"| first response byte p50, µs | 20 | 40 | 50 | 50 | 45 | 180 | 40 | 30 |",
		"- ✓ bulk throughput, data rule / reference ≥ 20: 26.67",
		"- ✗ short connections/s, data rule / direct ≥ 0.7: 0.60",
		"- ✓ short connections/s with --events, control + --events / control config ≥ 0.9: 0.94",
		"- ✗ connect() p99 added by tcpchaos (control config) ≤ 200 µs: 1000 µs",
		"- ✓ connect() p50 added by tcpchaos (data rule) ≤ 40 µs: 30 µs",
		"- ✗ no client error, no RST or abort under load (data rule): 0 errors, 2 RSTs+aborts", // one per round
		"toxiproxy against direct: bulk 0.20, short connections/s 0.15; first response byte added p50 10 µs",
		"| short connections: queue crossings per connection | — | 7.0 | — | — | — | — | — | — |",
		"| short connections: CPU per crossing, µs | — | 10.0 | — | — | — | — | — | — |",
		"| short connections: CPU per connection, µs | — | 70 | — | — | — | — | — | 300 |",
	)
}

// TestFinishKeepsWhatWasMeasured: a suite that failed part way reports
// what it measured before (a live round) and where it stopped; one that
// did not fail says nothing of stopping.
func TestFinishKeepsWhatWasMeasured(t *testing.T) {
	r := &report{opts: options{columns: []column{direct, control}}, live: make([][numColumns]liveRun, 1)}
	text, _ := r.finish(fmt.Errorf("SYN flood: %w", errors.New("raw socket: operation not permitted")))
	if !strings.Contains(text, "| median (min–max) over 1 rounds | direct | control config |") {
		t.Errorf("the live round measured before the failure is not reported:\n%s", text)
	}
	if !strings.HasSuffix(text, "\nThe suite stopped early: SYN flood: raw socket: operation not permitted\n") {
		t.Errorf("the report does not end saying where the suite stopped:\n%s", text)
	}
	if text, _ := r.finish(nil); strings.Contains(text, "stopped early") {
		t.Errorf("a complete suite's report says it stopped early:\n%s", text)
	}
}

// TestRenderLeavesOutColumns renders a report without the toxiproxy
// column: no table shows it.
func TestRenderLeavesOutColumns(t *testing.T) {
	r := &report{opts: options{columns: []column{direct, control}}, live: make([][numColumns]liveRun, 1)}
	text, _ := r.render()
	if strings.Contains(text, "toxiproxy") {
		t.Errorf("report shows a column not measured:\n%s", text)
	}
	if !strings.Contains(text, "| median (min–max) over 1 rounds | direct | control config |\n|---|---:|---:|\n") {
		t.Errorf("report lacks the two-column header:\n%s", text)
	}
}

func TestParseCPUTicks(t *testing.T) {
	// Fields 14 and 15 (utime 250, stime 75); the name holds ") (".
	stat := "4242 (tcp) (chaos) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 75 0 0 20 0 6 0 12345 1000000 2000 18446744073709551615\n"
	if got, err := parseCPUTicks(stat); err != nil || got != 325 {
		t.Errorf("parseCPUTicks = %d, %v; want 325", got, err)
	}
	for _, bad := range []string{"4242 tcpchaos S 1", "4242 (tcpchaos) S 1 2 3", "4242 (x) S 1 4242 4242 0 -1 0 0 0 0 0 x 75 0"} {
		if _, err := parseCPUTicks(bad); err == nil {
			t.Errorf("parseCPUTicks(%q) accepted", bad)
		}
	}
}

func TestCostBetween(t *testing.T) {
	list := func(seq100, seq101 string) string {
		return "  100  12345     0 2   256     0     0 " + seq100 + "  1\n" +
			"  101  12346     3 2   256     0     0 " + seq101 + "  1\n" +
			"garbage line\n"
	}
	before := usage{queued: parseQueueSequences(list("4294967290", "10")), cpuTicks: 100}
	after := usage{queued: parseQueueSequences(list("4", "30")), cpuTicks: 130}
	after.queued[102] = 50 // bound after the first snapshot: left out
	c := costBetween(before, after, 5)
	// 100: 10 across the wrap; 101: 20.
	if c.Queued != 30 || c.CPU != 0.3 || c.Conns != 5 {
		t.Fatalf("costBetween = %+v, want 30 queued, 0.3 s, 5 connections", c)
	}
	if got := c.crossingsPerConn(); got != 6 {
		t.Errorf("crossings per connection = %v, want 6", got)
	}
	if got := c.cpuPerCrossing(); math.Abs(got-1e4) > 1e-6 {
		t.Errorf("CPU per crossing = %v µs, want 10000", got)
	}
	none := costBetween(usage{cpuTicks: -1}, usage{cpuTicks: -1}, 5)
	if none.Queued != -1 || !math.IsNaN(none.CPU) || !math.IsNaN(none.crossingsPerConn()) || !math.IsNaN(none.cpuPerCrossing()) {
		t.Errorf("costBetween without program and queue = %+v, want nothing known", none)
	}
}

func TestParseMemory(t *testing.T) {
	status := "Name:\ttcpchaos\nVmHWM:\t   23552 kB\nVmRSS:\t   19148 kB\nThreads:\t6\n"
	m, err := parseMemory(bufio.NewScanner(strings.NewReader(status)))
	if err != nil || m.RSS != 19148<<10 || m.Peak != 23552<<10 {
		t.Errorf("parseMemory = %+v, %v", m, err)
	}
	if _, err := parseMemory(bufio.NewScanner(strings.NewReader("VmRSS:\t1 kB\n"))); err == nil {
		t.Error("a status without VmHWM was accepted")
	}
}

func TestParseSummaryFigures(t *testing.T) {
	out := "connections: 5000 seen, 3518 tracked at the end, 0 midstream, 0 new incarnations, 0 time-wait expired, 0 idle expired, 12 evicted; 0 packets of untracked tuples\n" +
		"packets by kind:\n  syn             3507\n  syn-ack         3500\n" +
		"queue: 9 received; kernel: 11 queued, 2 passed unseen (fail-open), copy range 256\n" +
		"interception: 32 packets reached the NFQUEUE rules, 21 passed the full queue unseen (fail-open, no id)\n" +
		"events: 10 written, 7 dropped (the writer fell behind its buffer of 8192)\n"
	for name, got := range map[string][2]int64{
		"unseen, socket full": {parseUnseen(out), 2},
		"unseen, queue full":  {sumMatches(fullUnseenRE, out), 21},
		"events dropped":      {parseEventsDropped(out), 7},
		"syns seen":           {sumMatches(synsSeenRE, out), 3507},
		"tracked":             {sumMatches(trackedRE, out), 3518},
		"evicted":             {sumMatches(evictedRE, out), 12},
		"no events line":      {parseEventsDropped("queue: 1 received\n"), -1},
		"max-connections":     {sumMatches(maxConnsRE, "tracker: msl 30s (TIME_WAIT 1m0s), max-connections 2000, idle-timeout 10m0s\n"), 2000},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %d, want %d", name, got[0], got[1])
		}
	}
	f := floodRun{result: floodResult{Sent: 5000, Probe: latencyResult{Micros: make([]float64, 10), Failed: 1}}, synsSeen: 3507}
	if got := f.synsUnseen(); got != 1504 {
		t.Errorf("SYNs unseen = %d, want 1504", got)
	}
}

// TestParseGCTrace reads the heap figures of gctrace lines among other
// output.
func TestParseGCTrace(t *testing.T) {
	out := "tcpchaos: intercepting TCP\n" +
		"gc 1 @1.123s 0%: 0.018+12+0.10 ms clock, 0.036+3.7/1.4/11+0.21 ms cpu, 5->6->4 MB, 5 MB goal, 0 MB stacks, 5 MB globals, 2 P\n" +
		"gc 2 @1.208s 0%: 0.036+26+0.010 ms clock, 0.072+0.85/5.2/0+0.021 ms cpu, 11->13->12 MB, 14 MB goal, 1 MB stacks, 5 MB globals, 2 P\n" +
		"gc 3 @1.318s 0%: 0.058+13+0.21 ms clock, 0.11+0.65/5.2/5.2+0.43 ms cpu, 24->25->10 MB, 29 MB goal, 0 MB stacks, 6 MB globals, 2 P\n" +
		"queue: 10 received\n"
	want := gcTrace{GCs: 3, FirstLive: 4, Live: 10, Peak: 25, Goal: 29, Globals: 6}
	if got := parseGCTrace(out); got != want {
		t.Errorf("parseGCTrace = %+v, want %+v", got, want)
	}
	if got := parseGCTrace("queue: 10 received\n"); got != (gcTrace{}) {
		t.Errorf("parseGCTrace without a GC = %+v, want zero", got)
	}
}

// TestAppendSYN decodes the flood's SYNs: each is a SYN to the server
// port from a source in 198.18.0.0/15 outside the topology's subnets.
func TestAppendSYN(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dst := netip.MustParseAddrPort("198.19.2.2:8080")
	p := decode.NewParser()
	var buf []byte
	for range 20000 {
		buf = appendSYN(buf[:0], rng, dst)
		var seg statetrack.Segment
		if err := p.Decode(buf, &seg); err != nil {
			t.Fatal(err)
		}
		a := seg.Src.Addr()
		if seg.Flags != statetrack.SYN || seg.Dst != dst || seg.Len != 0 {
			t.Fatalf("built %s -> %s %s len %d, want a SYN to %s", seg.Src, seg.Dst, seg.Flags, seg.Len, dst)
		}
		if !floodSources.Contains(a) || slices.ContainsFunc(floodKeepOut, func(p netip.Prefix) bool { return p.Contains(a) }) {
			t.Fatalf("spoofed source %s: outside %s or inside the topology's subnets", a, floodSources)
		}
	}
}

func TestParseSources(t *testing.T) {
	ips, err := parseSources("198.18.1.100,198.18.1.101")
	if err != nil || len(ips) != 2 || ips[1].String() != "198.18.1.101" {
		t.Errorf("parseSources = %v, %v", ips, err)
	}
	if ips, err := parseSources(""); err != nil || ips != nil {
		t.Errorf("parseSources(\"\") = %v, %v; want none", ips, err)
	}
	if _, err := parseSources("198.18.1.100,nope"); err == nil || !strings.Contains(err.Error(), "-from") {
		t.Errorf("a bad address: %v", err)
	}
}

// TestRenderFlood checks the flood's memory line and that a table that
// grew past max-connections misses the check.
func TestRenderFlood(t *testing.T) {
	with := floodRun{
		result: floodResult{Sent: 1000, Seconds: 0.5}, cost: cost{Queued: 2000, CPU: 0.01, Conns: 1000},
		before: memory{RSS: 10 << 20}, after: memory{RSS: 11 << 20, Peak: 12 << 20},
		tracked: 20001, evicted: 0, synsSeen: 0, fullUnseen: 7,
		heap: gcTrace{GCs: 3, FirstLive: 4, Live: 5, Peak: 30, Goal: 31, Globals: 5},
	}
	r := &report{opts: options{floodSYNs: 1000, port: 8080}, flood: &floodReport{maxConns: 20000, rounds: [][2]floodRun{{{result: floodResult{Sent: 1000, Seconds: 1}, cost: cost{Queued: -1, CPU: math.NaN()}}, with}}}}
	text, missed := r.render()
	if missed != 3 {
		t.Errorf("missed %d, want 3:\n%s", missed, text)
	}
	assertContains(t, text,
		"| packets passed the full queue unseen (SYN-ACKs too), as tcpchaos counts them: NFQUEUE rule counters − id_sequence (total) | — | 7 |",
		"| Go heap (gctrace): GCs, live at the first / the last, peak, largest goal, globals, MiB (last round) | — | 3: 4 / 5, 30, 31, 5 |",
		"the tracker's slab 3.4 MiB", "the control socket's trails 2.0 MiB", "the event writer's buffer 1.4 MiB (8192 events): 6.7 MiB",
		"- ✗ tcpchaos counts what passed it unseen: its counts (socket full + queue full, every packet) ≥ the SYNs it did not see (sent − seen): 7 ≥ 1000",
		"- ✗ tcpchaos's Go heap stays within its bound over the flood (peak at a GC ≤ 2 × (live at the first GC + what the flood may add) + globals and stacks; no GC: under 4 MiB): 30 MiB ≤ 26.5 MiB",
		"| SYNs sent per second | 1000 | 2000 |",
		"| packets queued per SYN sent | — | 2.00 |",
		"| tcpchaos RSS before / peak / after, MiB (last round) | — | 10.0 / 12.0 / 11.0 |",
		"(peak − before): 2.0 MiB. What the flood may add",
		"- ✗ connections tracked at the end of the flood ≤ tracker.max-connections (20000): 20001",
	)
}

// assertContains fails t for each of wants that text lacks.
func assertContains(t *testing.T, text string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
}

func TestBucketQuantile(t *testing.T) {
	cum := map[float64]uint64{1e-6: 0, 2e-6: 5, 4e-6: 9, 8e-6: 10}
	for _, c := range []struct {
		count uint64
		q     float64
		want  float64
	}{{10, 0.5, 2e-6}, {10, 0.9, 4e-6}, {10, 0.99, 8e-6}, {11, 0.99, math.Inf(1)}} {
		if got := bucketQuantile(cum, c.count, c.q); got != c.want {
			t.Errorf("quantile %g of %d: %g, want %g", c.q, c.count, got, c.want)
		}
	}
	if got := bucketQuantile(cum, 0, 0.5); !math.IsNaN(got) {
		t.Errorf("quantile of no samples: %g, want NaN", got)
	}
}
