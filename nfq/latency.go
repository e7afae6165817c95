//go:build linux

package nfq

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// LatencyBuckets is the number of buckets of a Latency histogram: bounds
// of 1 µs, 2 µs, 4 µs, … 2^20 µs (about 1 s), and one for longer times.
const LatencyBuckets = 22

// LatencyBound returns the upper bound (inclusive) of bucket i of a
// Latency histogram, 2^i µs; the last bucket has none.
func LatencyBound(i int) time.Duration { return time.Microsecond << i }

// Latency is a snapshot of a histogram of durations with fixed buckets.
type Latency struct {
	// Counts[i] counts the durations d with LatencyBound(i-1) < d <=
	// LatencyBound(i) (bucket 0: d <= 1 µs; the last bucket: every d
	// longer than the bound before it).
	Counts [LatencyBuckets]uint64
	// Sum is the durations' sum.
	Sum time.Duration
}

// Count returns how many durations the histogram holds.
func (l *Latency) Count() uint64 {
	var n uint64
	for _, c := range l.Counts {
		n += c
	}
	return n
}

// Add adds o's durations to l, e.g. to total the histograms of several
// queues.
func (l *Latency) Add(o *Latency) {
	for i := range l.Counts {
		l.Counts[i] += o.Counts[i]
	}
	l.Sum += o.Sum
}

// latencyHistogram records durations without a lock or an allocation:
// one bucket found by a bit count, two atomic adds. Its snapshot may miss
// an observation that races it (the sum and the counts are read one by
// one).
type latencyHistogram struct {
	counts [LatencyBuckets]atomic.Uint64
	sum    atomic.Int64 // ns
}

// observe records one duration.
func (h *latencyHistogram) observe(d time.Duration) {
	h.counts[latencyBucket(d)].Add(1)
	h.sum.Add(int64(d))
}

// latencyBucket returns the bucket of d: the least i with d <=
// LatencyBound(i), the last bucket past the last bound.
func latencyBucket(d time.Duration) int {
	if d <= time.Microsecond {
		return 0
	}
	us := (uint64(d) + uint64(time.Microsecond) - 1) / uint64(time.Microsecond) // rounded up
	return min(bits.Len64(us-1), LatencyBuckets-1)
}

// snapshot returns the histogram's counts.
func (h *latencyHistogram) snapshot() Latency {
	var l Latency
	for i := range h.counts {
		l.Counts[i] = h.counts[i].Load()
	}
	l.Sum = time.Duration(h.sum.Load())
	return l
}
