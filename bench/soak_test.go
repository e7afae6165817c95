package main

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// soakMetrics is a scrape of `run --metrics` during a soak with two
// queues (abridged: the soak reads only these families).
const soakMetrics = `# TYPE go_goroutines gauge
go_goroutines 18
# TYPE process_open_fds gauge
process_open_fds 21
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 3.088384e+07
# TYPE tcpchaos_config_reloads_total counter
tcpchaos_config_reloads_total{result="ok"} 7
tcpchaos_config_reloads_total{result="refused"} 1
# TYPE tcpchaos_held_packets gauge
tcpchaos_held_packets 1
# TYPE tcpchaos_queue_errors_total counter
tcpchaos_queue_errors_total{error="decode",queue="100"} 4
tcpchaos_queue_errors_total{error="verdict",queue="100"} 2
tcpchaos_queue_errors_total{error="verdict",queue="101"} 1
# TYPE tcpchaos_queue_kernel_dropped_total counter
tcpchaos_queue_kernel_dropped_total{queue="100"} 0
tcpchaos_queue_kernel_dropped_total{queue="101"} 0
# TYPE tcpchaos_queue_unseen_total counter
tcpchaos_queue_unseen_total{queue="100"} 3
tcpchaos_queue_unseen_total{queue="101"} 2
# TYPE tcpchaos_queue_user_dropped_total counter
tcpchaos_queue_user_dropped_total{queue="100"} 0
tcpchaos_queue_user_dropped_total{queue="101"} 6
# TYPE tcpchaos_queue_waiting_packets gauge
tcpchaos_queue_waiting_packets{queue="100"} 1
tcpchaos_queue_waiting_packets{queue="101"} 2
# TYPE tcpchaos_rule_hits_total counter
tcpchaos_rule_hits_total{action="delay",rule="slow-syn-ack"} 106
tcpchaos_rule_hits_total{action="drop",rule="lose-final-ack"} 19
# TYPE tcpchaos_tracked_connections gauge
tcpchaos_tracked_connections 107
`

func TestParseSoakSample(t *testing.T) {
	s, err := parseSoakSample(strings.NewReader(soakMetrics))
	if err != nil {
		t.Fatal(err)
	}
	got := []float64{s.rss, s.goroutines, s.fds, s.tracked, s.held, s.waiting, s.reloadsOK, s.reloadsRefused, s.unseen, s.userDropped, s.kernelDropped, s.verdictErr}
	want := []float64{30883840, 18, 21, 107, 1, 3, 7, 1, 5, 6, 0, 3}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d = %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
	if s.hits["slow-syn-ack"] != 106 || s.hits["lose-final-ack"] != 19 || len(s.hits) != 2 {
		t.Errorf("hits = %v", s.hits)
	}

	abridged := strings.ReplaceAll(soakMetrics, "process_open_fds", "process_other")
	abridged = strings.ReplaceAll(abridged, "tcpchaos_tracked_connections", "tcpchaos_other")
	if _, err := parseSoakSample(strings.NewReader(abridged)); err == nil ||
		!strings.Contains(err.Error(), "missing process_open_fds, tcpchaos_tracked_connections") {
		t.Errorf("missing metrics: err = %v", err)
	}
	if _, err := parseSoakSample(strings.NewReader("go_goroutines{ 1\n")); err == nil {
		t.Error("a malformed scrape was accepted")
	}
}

func TestCheckGrowth(t *testing.T) {
	b := bound{rel: 0.1, abs: 2}
	for _, tc := range []struct {
		name      string
		xs        []float64
		mid, last float64
		grew      bool
	}{
		// The warm-up third may climb: it is left out.
		{"levelled off", []float64{10, 50, 90, 100, 101, 99, 100, 102, 100}, 101, 102, false},
		{"swinging", []float64{5, 5, 5, 40, 10, 35, 12, 41, 9}, 40, 41, false},
		{"falling", []float64{90, 90, 90, 80, 70, 60, 50, 40, 30}, 80, 50, false},
		{"climbing", []float64{10, 20, 30, 40, 50, 60, 70, 80, 90}, 60, 90, true},
		{"a late jump", []float64{100, 100, 100, 100, 100, 100, 100, 100, 113}, 100, 113, true},
		{"within the bound", []float64{100, 100, 100, 100, 100, 100, 100, 100, 112}, 100, 112, false},
		// 10 samples: thirds of 3, the middle takes the extra one.
		{"uneven", []float64{0, 0, 0, 7, 7, 7, 50, 7, 7, 7}, 50, 7, false},
	} {
		g, err := checkGrowth(tc.xs, b)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if g != (growth{mid: tc.mid, last: tc.last, grew: tc.grew}) {
			t.Errorf("%s: %+v, want mid %v last %v grew %v", tc.name, g, tc.mid, tc.last, tc.grew)
		}
	}
	if _, err := checkGrowth([]float64{1, 2, 3, 4, 5}, b); err == nil {
		t.Error("5 samples were judged")
	}
}

func TestSparkline(t *testing.T) {
	for _, tc := range []struct {
		xs    []float64
		width int
		want  string
	}{
		{[]float64{0, 1, 2, 3, 4, 5, 6, 7}, 8, "▁▂▃▄▅▆▇█"},
		{[]float64{3, 3, 3}, 8, "▁▁▁"},
		// Each character is the maximum of its share.
		{[]float64{0, 7, 0, 0, 7, 0}, 3, "█▁█"},
		{nil, 8, ""},
	} {
		if got := sparkline(tc.xs, tc.width); got != tc.want {
			t.Errorf("sparkline(%v, %d) = %q, want %q", tc.xs, tc.width, got, tc.want)
		}
	}
}

// TestSoakRenderFails checks that the report fails what the soak must
// fail: a climbing series, a refused reload, a packet passed unseen, a
// failed client connection and a rule that never fired.
func TestSoakRenderFails(t *testing.T) {
	run := &soakRun{d: time.Minute, rate: 50, long: 1, every: 3 * time.Second, rules: []string{"a", "b"}, reloads: [3]int{2, 1, 1}}
	for i := range 9 {
		run.samples = append(run.samples, soakSample{at: time.Duration(i) * soakSampleEvery, rss: 20 << 20, goroutines: 17, fds: 20, tracked: 100})
	}
	run.final = soakSample{reloadsOK: 4, hits: map[string]float64{"a": 3, "b": 1}}
	run.client.Short.OK, run.client.Long.OK = 100, 1
	text, failed := run.render("test machine", time.Unix(0, 0))
	if failed != 0 {
		t.Fatalf("a clean soak failed %d checks:\n%s", failed, text)
	}

	for i := range run.samples {
		run.samples[i].goroutines += float64(20 * i)
	}
	run.final.reloadsOK, run.final.reloadsRefused = 3, 1
	run.final.unseen = 1
	run.client.Short.add(errors.New("connection refused"))
	delete(run.final.hits, "b")
	text, failed = run.render("test machine", time.Unix(0, 0))
	for _, line := range []string{
		"- ✗ goroutines bounded: max of the last third 177, of the middle third 117",
		"- ✗ every reload done: 3 ok, 1 refused, 4 triggered",
		"- ✗ every queued packet got tcpchaos's verdict: 1 passed unseen",
		"- ✗ every client connection went through: 1 failed, 0 ticks skipped: connection refused",
		"- ✗ every rule fired: b never",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("report lacks %q", line)
		}
	}
	if failed != 5 {
		t.Errorf("%d checks failed, want 5:\n%s", failed, text)
	}
}

// TestSoakClient runs the soak's traffic against the server's handler on
// loopback: short and long connections all go through, and the long ones
// are replaced as they close.
func TestSoakClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				handle(conn)
			})
		}
	})
	const d = 3 * time.Second
	r, err := soakClient(ln.Addr().String(), d, 20, 2)
	if err != nil {
		t.Fatal(err)
	}
	if r.Short.OK < 40 || r.Short.OK > 61 || r.Short.Errors != nil || r.Skipped != 0 {
		t.Errorf("short connections: %+v, skipped %d; want about 60 ok, no error", r.Short, r.Skipped)
	}
	// Lives of 1 s: slot 0 closes at 0.5 s, slot 1 at 1 s, then every
	// second: 3 + 2 connections in 3 s.
	if r.Long.OK < 4 || r.Long.Errors != nil || r.Exchanges < r.Long.OK {
		t.Errorf("long connections: %+v, %d exchanges; want at least 4 ok, no error", r.Long, r.Exchanges)
	}
	if _, err := soakClient(ln.Addr().String(), d, 0, 2); err == nil {
		t.Error("rate 0 was accepted")
	}
}
