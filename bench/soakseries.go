package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// soakSample is one reading of tcpchaos's metrics during the soak.
type soakSample struct {
	at time.Duration // since the traffic started
	// The gauges watched for growth.
	rss, goroutines, fds, tracked, held, waiting float64
	// Counters: reloads by result, and what left a packet without a
	// verdict of tcpchaos's (passed unseen, dropped by the kernel, or
	// refused to or by tcpchaos's socket).
	reloadsOK, reloadsRefused                      float64
	unseen, userDropped, kernelDropped, verdictErr float64
	// hits are the rules' hits by rule name.
	hits map[string]float64
}

// parseSoakSample reads one scrape of `run --metrics` (Prometheus text
// format). A metric the soak needs that is missing is an error naming it;
// the per-queue ones are added over the queues.
func parseSoakSample(r io.Reader) (soakSample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return soakSample{}, fmt.Errorf("parse metrics: %w", err)
	}
	var errs []string
	sum := func(name string, labels ...string) float64 {
		mf := mfs[name]
		if mf == nil {
			errs = append(errs, name)
			return math.NaN()
		}
		var v float64
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m.GetLabel(), labels[i]) != labels[i+1] {
					continue metrics
				}
			}
			switch {
			case m.GetGauge() != nil:
				v += m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				v += m.GetCounter().GetValue()
			}
		}
		return v
	}
	s := soakSample{
		rss:            sum("process_resident_memory_bytes"),
		goroutines:     sum("go_goroutines"),
		fds:            sum("process_open_fds"),
		tracked:        sum("tcpchaos_tracked_connections"),
		held:           sum("tcpchaos_held_packets"),
		waiting:        sum("tcpchaos_queue_waiting_packets"),
		reloadsOK:      sum("tcpchaos_config_reloads_total", "result", "ok"),
		reloadsRefused: sum("tcpchaos_config_reloads_total", "result", "refused"),
		unseen:         sum("tcpchaos_queue_unseen_total"),
		userDropped:    sum("tcpchaos_queue_user_dropped_total"),
		kernelDropped:  sum("tcpchaos_queue_kernel_dropped_total"),
		verdictErr:     sum("tcpchaos_queue_errors_total", "error", "verdict"),
		hits:           map[string]float64{},
	}
	if mf := mfs["tcpchaos_rule_hits_total"]; mf != nil {
		for _, m := range mf.GetMetric() {
			s.hits[labelValue(m.GetLabel(), "rule")] += m.GetCounter().GetValue()
		}
	}
	if len(errs) > 0 {
		return s, fmt.Errorf("metrics: missing %s", strings.Join(errs, ", "))
	}
	return s, nil
}

// labelValue returns the value of the label name ("" without it).
func labelValue[L interface {
	GetName() string
	GetValue() string
}](labels []L, name string) string {
	for _, l := range labels {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// bound is how much a series may rise from the middle third of a soak to
// its last third and still count as bounded: by rel of the middle third's
// maximum plus abs.
type bound struct{ rel, abs float64 }

// minGrowthSamples is the fewest samples the growth check judges: two in
// each third.
const minGrowthSamples = 6

// growth is the verdict on one series: the maxima of its middle and last
// thirds (the first third is the warm-up), and whether it grew beyond its
// bound.
type growth struct {
	mid, last float64
	grew      bool
}

// checkGrowth splits xs into thirds, leaves out the first (warm-up: the
// long connections, the rule timers and the Go heap settle), and reports
// growth when the last third's maximum exceeds the middle third's by more
// than b allows: a series that keeps climbing does, one that has levelled
// off or swings around a level does not. Fewer than minGrowthSamples
// samples cannot be judged (an error).
func checkGrowth(xs []float64, b bound) (growth, error) {
	if len(xs) < minGrowthSamples {
		return growth{}, fmt.Errorf("%d samples, want at least %d", len(xs), minGrowthSamples)
	}
	third := len(xs) / 3
	g := growth{mid: slices.Max(xs[third : len(xs)-third]), last: slices.Max(xs[len(xs)-third:])}
	g.grew = g.last > g.mid*(1+b.rel)+b.abs
	return g, nil
}

// sparkline draws xs as one line of block characters from their minimum
// (▁) to their maximum (█), at most width of them (each the maximum of
// its share of xs).
func sparkline(xs []float64, width int) string {
	if len(xs) == 0 || width < 1 {
		return ""
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	const blocks = "▁▂▃▄▅▆▇█"
	levels := []rune(blocks)
	n := min(width, len(xs))
	var b strings.Builder
	for i := range n {
		v := slices.Max(xs[i*len(xs)/n : (i+1)*len(xs)/n])
		level := 0
		if hi > lo {
			level = int(math.Round((v - lo) / (hi - lo) * float64(len(levels)-1)))
		}
		b.WriteRune(levels[level])
	}
	return b.String()
}
