//go:build linux

package nfq

import (
	"testing"
	"time"
)

func TestLatencyBuckets(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0}, {-time.Second, 0}, {time.Microsecond, 0},
		{time.Microsecond + 1, 1}, {2 * time.Microsecond, 1},
		{3 * time.Microsecond, 2}, {4 * time.Microsecond, 2}, {4*time.Microsecond + 1, 3},
		{LatencyBound(LatencyBuckets - 2), LatencyBuckets - 2},
		{LatencyBound(LatencyBuckets-2) + 1, LatencyBuckets - 1},
		{time.Hour, LatencyBuckets - 1},
	} {
		if got := latencyBucket(c.d); got != c.want {
			t.Errorf("latencyBucket(%s) = %d, want %d", c.d, got, c.want)
		}
	}
}

func TestLatencySnapshot(t *testing.T) {
	var h latencyHistogram
	for _, d := range []time.Duration{time.Microsecond, 50 * time.Microsecond, 60 * time.Microsecond, 2 * time.Second} {
		h.observe(d)
	}
	l := h.snapshot()
	if l.Count() != 4 || l.Sum != 2*time.Second+111*time.Microsecond {
		t.Errorf("count %d, sum %s; want 4, 2.000111s", l.Count(), l.Sum)
	}
	if l.Counts[0] != 1 || l.Counts[6] != 2 || l.Counts[LatencyBuckets-1] != 1 {
		t.Errorf("counts %v: want 1 in bucket 0 (1µs), 2 in bucket 6 (64µs), 1 in the last", l.Counts)
	}
}

// TestWriterTimesVerdictsOnRead: a verdict given on reading its packet is
// timed from the read to the write; a held packet's release is not.
func TestWriterTimesVerdictsOnRead(t *testing.T) {
	w := newVerdictWriter(100, &countingKernel{})
	w.latency = &latencyHistogram{}
	read := time.Now().Add(-3 * time.Millisecond)
	w.add(verdictEntry{id: 1, verdict: verdictAccept, read: read})
	w.add(verdictEntry{id: 2, verdict: verdictDrop, read: read})
	w.add(verdictEntry{id: 3, verdict: verdictAccept}) // a release
	if err := w.flush(false, true); err != nil {
		t.Fatal(err)
	}
	l := w.latency.snapshot()
	if l.Count() != 2 || l.Sum < 6*time.Millisecond {
		t.Errorf("%d verdicts timed, sum %s; want 2, at least 6ms", l.Count(), l.Sum)
	}
	if l.Counts[12] != 2 { // 3 ms and a little: (2.048, 4.096] ms
		t.Errorf("counts %v, want both in bucket 12", l.Counts)
	}
}

func BenchmarkLatencyObserve(b *testing.B) {
	var h latencyHistogram
	b.ReportAllocs()
	d := time.Duration(0)
	for b.Loop() {
		d += 997 * time.Nanosecond
		h.observe(d % time.Second)
	}
}
