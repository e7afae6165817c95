package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpchaos/tcpchaos/internal/capture"
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
// tcpchaos keeps up with direct except for connect() p99 and one RST.
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
			latency:  latencyResult{Micros: micros},
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
	}
	r := &report{opts: options{rounds: 2, port: 8080}, machine: "test", live: [][numColumns]liveRun{round, round}}
	text, missed := r.render()
	// Missed: p99 added (control: 2000−1000 = 1000 µs; data rule and
	// data rule with metrics: 1500 µs), the data rule's RST.
	if missed != 4 {
		t.Errorf("missed %d targets, want 4:\n%s", missed, text)
	}
	for _, want := range []string{
		"| bulk TCP, Gbit/s | 10.00 | 9.80 | 8.00 | 7.90 | 7.00 | 0.30 |",
		"- (idle rule, every packet queued: bulk 0.71, short connections/s 0.50 of the control config's; connect() p50 adds 25 µs)",
		"- ✓ bulk throughput, data rule, --metrics / data rule ≥ 0.9: 0.99",
		"| metrics scrapes (failed), total | — | — | — | 0 (0) | — | — |",
		"- ✓ bulk throughput, data rule / reference ≥ 20: 26.67",
		"- ✗ connect() p99 added by tcpchaos (control config) ≤ 300 µs: 1000 µs",
		"- ✓ connect() p50 added by tcpchaos (data rule) ≤ 60 µs: 30 µs",
		"- ✗ no client error, no RST or abort under load (data rule): 0 errors, 2 RSTs+aborts", // one per round
	} {
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
