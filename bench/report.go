package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// spread is the median, minimum and maximum of some values.
type spread struct {
	med, min, max float64
	n             int
}

// summarize returns the spread of xs, NaNs (figures not measured) left
// out (n 0 when none is left).
func summarize(xs []float64) spread {
	s := slices.DeleteFunc(slices.Clone(xs), math.IsNaN)
	if len(s) == 0 {
		return spread{}
	}
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{med: med, min: s[0], max: s[len(s)-1], n: len(s)}
}

// format writes "med (min–max)" with prec decimals, just "med" when the
// minimum and the maximum print alike, "—" for none.
func (s spread) format(prec int) string {
	if s.n == 0 {
		return "—"
	}
	lo, hi := fmt.Sprintf("%.*f", prec, s.min), fmt.Sprintf("%.*f", prec, s.max)
	if lo == hi {
		return fmt.Sprintf("%.*f", prec, s.med)
	}
	return fmt.Sprintf("%.*f (%s–%s)", prec, s.med, lo, hi)
}

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of xs,
// NaN for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// Per-run figures of a live column.
func (r liveRun) gbits() float64 {
	if r.bulk.Seconds == 0 {
		return math.NaN()
	}
	return float64(r.bulk.Bytes) * 8 / r.bulk.Seconds / 1e9
}

func (r liveRun) connsPerSec() float64 { return r.conns.perSec() }

// perSec is the successful connections per second.
func (r connsResult) perSec() float64 {
	if r.Seconds == 0 {
		return math.NaN()
	}
	return float64(r.OK) / r.Seconds
}

func (r liveRun) p50() float64    { return percentile(r.latency.Micros, 50) }
func (r liveRun) p99() float64    { return percentile(r.latency.Micros, 99) }
func (r liveRun) ttfb50() float64 { return percentile(r.latency.TTFB, 50) }
func (r liveRun) ttfb99() float64 { return percentile(r.latency.TTFB, 99) }

// aborts adds up the TcpExtTCPAbort* counters.
func (r liveRun) aborts() uint64 {
	var n uint64
	for k, v := range r.counters {
		if strings.HasPrefix(k, "TcpExtTCPAbort") {
			n += v
		}
	}
	return n
}

// failures counts what went wrong on the client side.
func (r liveRun) failures() int64 {
	return r.conns.Resets + r.conns.Timeout + r.conns.Other + r.latency.Failed
}

// brief is the one-line progress report of a run.
func (r liveRun) brief() string {
	return fmt.Sprintf("%.2f Gbit/s, %.0f conn/s, connect p50 %.0f µs p99 %.0f µs, %d failures, %d RSTs",
		r.gbits(), r.connsPerSec(), r.p50(), r.p99(), r.failures(), r.counters["TcpOutRsts"])
}

// report is everything the suite measured.
type report struct {
	opts    options
	machine string
	date    time.Time
	live    [][numColumns]liveRun // by round
	benches []offlineBench
	replay  replayFigures
	oracle  *oracleRun                    // nil when not run
	spread  [][numSpreadColumns]spreadRun // the two-queue figure, by round
	flood   *floodReport                  // nil when not run
	dark    *blackholeRun                 // nil when not run
}

// perColumn returns f of every round, for one column.
func (r *report) perColumn(col column, f func(liveRun) float64) []float64 {
	var xs []float64
	for _, rr := range r.live {
		xs = append(xs, f(rr[col]))
	}
	return xs
}

// ratio returns, per round, f(col) / f(base).
func (r *report) ratio(col, base column, f func(liveRun) float64) []float64 {
	var xs []float64
	for _, rr := range r.live {
		xs = append(xs, f(rr[col])/f(rr[base]))
	}
	return xs
}

// added returns, per round, f(col) − f(direct).
func (r *report) added(col column, f func(liveRun) float64) []float64 {
	var xs []float64
	for _, rr := range r.live {
		xs = append(xs, f(rr[col])-f(rr[direct]))
	}
	return xs
}

// total adds f over the rounds of one column.
func (r *report) total(col column, f func(liveRun) int64) int64 {
	var n int64
	for _, rr := range r.live {
		n += f(rr[col])
	}
	return n
}

// checks collects target lines and counts the missed ones.
type checks struct {
	b      *strings.Builder
	missed int
}

// check writes "- ✓ what: got" or "- ✗ what: got".
func (c *checks) check(ok bool, what, got string) {
	mark := "✓"
	if !ok {
		mark = "✗"
		c.missed++
	}
	fmt.Fprintf(c.b, "- %s %s: %s\n", mark, what, got)
}

// render returns the report as markdown and the number of missed targets.
func (r *report) render() (string, int) {
	var b strings.Builder
	c := checks{b: &b}
	o := r.opts
	fmt.Fprintf(&b, "Machine: %s. Run %s", r.machine, r.date.Format("2006-01-02 15:04 MST"))
	if o.smoke {
		b.WriteString(" (-smoke: figures not meaningful)")
	}
	b.WriteString(".\n\n")
	if len(r.live) > 0 {
		r.renderLive(&b, &c)
	}
	if len(r.spread) > 0 {
		r.renderSpread(&b)
	}
	if r.flood != nil {
		r.renderFlood(&b, &c)
	}
	if r.dark != nil {
		r.renderBlackhole(&b, &c)
	}
	if len(r.benches) > 0 {
		r.renderOffline(&b, &c)
	}
	if r.oracle != nil {
		r.renderOracle(&b, &c)
	}
	return b.String(), c.missed
}

func (r *report) renderLive(b *strings.Builder, c *checks) {
	o := r.opts
	fmt.Fprintf(b, "Live: client → router → server in network namespaces (veth), IPv4, server port %d. "+
		"Rounds: %d, columns interleaved in each round; bulk: one connection, %s; short connections: %d workers, %s; "+
		"connect(): %d sequential connects.\n\n", o.port, len(r.live), o.bulk, o.workers, o.conns, o.connects)
	row := r.table(b, fmt.Sprintf("median (min–max) over %d rounds", len(r.live)))
	spreadRow := func(name string, prec int, f func(liveRun) float64) {
		row(name, func(col column) string { return summarize(r.perColumn(col, f)).format(prec) })
	}
	spreadRow("bulk TCP, Gbit/s", 2, liveRun.gbits)
	spreadRow("short connections/s", 0, liveRun.connsPerSec)
	spreadRow("connect() p50, µs", 0, liveRun.p50)
	spreadRow("connect() p99, µs", 0, liveRun.p99)
	spreadRow("first response byte p50, µs", 0, liveRun.ttfb50)
	spreadRow("first response byte p99, µs", 0, liveRun.ttfb99)
	row("client errors: reset / timeout / other (total)", func(col column) string {
		return fmt.Sprintf("%d / %d / %d",
			r.total(col, func(l liveRun) int64 { return l.conns.Resets }),
			r.total(col, func(l liveRun) int64 { return l.conns.Timeout }),
			r.total(col, func(l liveRun) int64 { return l.conns.Other + l.latency.Failed }))
	})
	row("RSTs sent / aborts during bulk and short connections, nstat both ends (total)", func(col column) string {
		return fmt.Sprintf("%d / %d",
			r.total(col, func(l liveRun) int64 { return int64(l.counters["TcpOutRsts"]) }),
			r.total(col, func(l liveRun) int64 { return int64(l.aborts()) }))
	})
	row("RSTs sent during the connect() probe (total)", func(col column) string {
		return fmt.Sprint(r.total(col, func(l liveRun) int64 { return int64(l.probeCounters["TcpOutRsts"]) }))
	})
	row("retransmitted segments / SYN retransmits (total)", func(col column) string {
		return fmt.Sprintf("%d / %d",
			r.total(col, func(l liveRun) int64 { return int64(l.counters["TcpRetransSegs"]) }),
			r.total(col, func(l liveRun) int64 { return int64(l.counters["TcpExtTCPSynRetrans"]) }))
	})
	reported := func(col column, f func(liveRun) int64) string {
		if configs[col] == "" {
			return "—"
		}
		if r.total(col, func(l liveRun) int64 { return min(f(l), 0) }) < 0 {
			return "not reported"
		}
		return fmt.Sprint(r.total(col, f))
	}
	row("packets passed unseen, fail-open (total)", func(col column) string {
		return reported(col, func(l liveRun) int64 { return l.unseen })
	})
	row("events dropped by the writer (total)", func(col column) string {
		return reported(col, func(l liveRun) int64 { return l.eventsDropped })
	})
	row("metrics scrapes (failed), total", func(col column) string {
		if col != dataMetrics {
			return "—"
		}
		return fmt.Sprintf("%d (%d)", r.total(col, func(l liveRun) int64 { return int64(l.scrapes.n) }),
			r.total(col, func(l liveRun) int64 { return int64(l.scrapes.failed) }))
	})
	row("verdict written, p50 / p99 bucket bound from tcpchaos_verdict_seconds, µs", func(col column) string {
		if col != dataMetrics {
			return "—"
		}
		return summarize(r.perColumn(col, func(l liveRun) float64 { return l.scrapes.verdictP50 })).format(0) + " / " +
			summarize(r.perColumn(col, func(l liveRun) float64 { return l.scrapes.verdictP99 })).format(0)
	})
	if len(r.live) > 0 {
		for _, e := range r.errorSamples() {
			fmt.Fprintf(b, "\nclient error: %s", e)
		}
	}

	fmt.Fprintf(b, "\nTargets (ratio or difference against direct in the same round; median (min–max) over rounds):\n\n")
	ratioCheck := func(what string, col, base column, f func(liveRun) float64, want float64) {
		s := summarize(r.ratio(col, base, f))
		c.check(s.med >= want, fmt.Sprintf("%s, %s / %s ≥ %g", what, col, base, want), s.format(2))
	}
	ratioCheck("bulk throughput", control, direct, liveRun.gbits, 0.97)
	ratioCheck("bulk throughput", dataRule, direct, liveRun.gbits, 0.75)
	ratioCheck("bulk throughput", dataRule, reference, liveRun.gbits, 20)
	ratioCheck("short connections/s", control, direct, liveRun.connsPerSec, 0.70)
	ratioCheck("short connections/s", dataRule, direct, liveRun.connsPerSec, 0.70)
	ratioCheck("short connections/s with --events", eventsOn, control, liveRun.connsPerSec, 0.90)
	// The metrics' cost on the packet path (the verdict histogram) and of
	// the scrapes: within the noise of the data rule column.
	ratioCheck("bulk throughput", dataMetrics, dataRule, liveRun.gbits, 0.90)
	ratioCheck("short connections/s", dataMetrics, dataRule, liveRun.connsPerSec, 0.90)
	for _, col := range []column{control, dataRule, dataMetrics} {
		for _, p := range []struct {
			name string
			f    func(liveRun) float64
			want float64
		}{{"p50", liveRun.p50, 40}, {"p99", liveRun.p99, 200}} {
			s := summarize(r.added(col, p.f))
			c.check(s.med <= p.want, fmt.Sprintf("connect() %s added by tcpchaos (%s) ≤ %g µs", p.name, col, p.want), s.format(0)+" µs")
		}
	}
	// The idle rule's cost: every packet queued where the control config
	// lets the data phase bypass the queue. Indicative, not a target: the
	// machine is shared.
	fmt.Fprintf(b, "- (idle rule, every packet queued: bulk %s, short connections/s %s of the control config's; connect() p50 adds %s µs)\n",
		summarize(r.ratio(idleRule, control, liveRun.gbits)).format(2), summarize(r.ratio(idleRule, control, liveRun.connsPerSec)).format(2),
		summarize(r.added(idleRule, liveRun.p50)).format(0))
	ref := summarize(r.added(reference, liveRun.p50))
	ref99 := summarize(r.added(reference, liveRun.p99))
	fmt.Fprintf(b, "- (reference program adds p50 %s µs, p99 %s µs)\n", ref.format(0), ref99.format(0))
	if slices.Contains(o.columns, toxiproxy) {
		fmt.Fprintf(b, "- (toxiproxy against direct: bulk %s, short connections/s %s; first response byte added p50 %s µs, p99 %s µs; "+
			"tcpchaos control config adds p50 %s µs, p99 %s µs)\n",
			summarize(r.ratio(toxiproxy, direct, liveRun.gbits)).format(2), summarize(r.ratio(toxiproxy, direct, liveRun.connsPerSec)).format(2),
			summarize(r.added(toxiproxy, liveRun.ttfb50)).format(0), summarize(r.added(toxiproxy, liveRun.ttfb99)).format(0),
			summarize(r.added(control, liveRun.ttfb50)).format(0), summarize(r.added(control, liveRun.ttfb99)).format(0))
	}
	for _, col := range []column{control, dataRule, dataMetrics, idleRule, eventsOn} {
		fails := r.total(col, liveRun.failures)
		rsts := r.total(col, func(l liveRun) int64 { return int64(l.counters["TcpOutRsts"] + l.aborts()) })
		c.check(fails == 0 && rsts == 0, fmt.Sprintf("no client error, no RST or abort under load (%s)", col), fmt.Sprintf("%d errors, %d RSTs+aborts", fails, rsts))
	}
	b.WriteString("\n")
	r.renderCosts(b)
}

// table writes the header of a table with a column per live column
// measured and returns a function that writes one row.
func (r *report) table(b *strings.Builder, corner string) func(name string, cell func(column) string) {
	cols := r.opts.columns
	fmt.Fprintf(b, "| %s |", corner)
	for _, col := range cols {
		fmt.Fprintf(b, " %s |", col)
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(cols)) + "\n")
	return func(name string, cell func(column) string) {
		fmt.Fprintf(b, "| %s |", name)
		for _, col := range cols {
			fmt.Fprintf(b, " %s |", cell(col))
		}
		b.WriteString("\n")
	}
}

// renderCosts writes the queue crossings and the CPU time of the program
// in the router, per workload.
func (r *report) renderCosts(b *strings.Builder) {
	b.WriteString("Cost in the router, per workload (kernel queue counters and the program's user + system time from /proc; " +
		"a crossing is a packet queued to user space):\n\n")
	row := r.table(b, fmt.Sprintf("median (min–max) over %d rounds", len(r.live)))
	for w := range numWorkloads {
		costRow := func(name string, prec int, f func(cost) float64) {
			row(fmt.Sprintf("%s: %s", w, name), func(col column) string {
				return summarize(r.perColumn(col, func(l liveRun) float64 { return f(l.costs[w]) })).format(prec)
			})
		}
		costRow("queue crossings per connection", 1, cost.crossingsPerConn)
		costRow("CPU per crossing, µs", 1, cost.cpuPerCrossing)
		costRow("CPU per connection, µs", 0, cost.cpuPerConn)
	}
	b.WriteString("\n")
}

// errorSamples returns the distinct client error texts of every run, with
// their column.
func (r *report) errorSamples() []string {
	var out []string
	for _, rr := range r.live {
		for col, run := range rr {
			for _, e := range slices.Concat(run.conns.Errors, run.latency.Errors) {
				s := fmt.Sprintf("%s: %s", column(col), e)
				if len(out) < 2*maxErrors && !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

func (r *report) renderOffline(b *strings.Builder, c *checks) {
	n := 0
	if len(r.benches) > 0 {
		n = len(r.benches[0].runs["ns/op"])
	}
	fmt.Fprintf(b, "Offline, one core (go test -cpu 1 -benchmem), median (min–max) over runs: %d.\n\n", n)
	b.WriteString("| benchmark | ns/op | packets/s | B/op | allocs/op | other |\n|---|---:|---:|---:|---:|---|\n")
	find := func(name string) *offlineBench {
		for i := range r.benches {
			if r.benches[i].name == name {
				return &r.benches[i]
			}
		}
		return nil
	}
	zeroAllocs := true
	for _, ob := range r.benches {
		ns := summarize(ob.runs["ns/op"])
		pps := "—"
		if ob.perOp > 0 {
			pps = formatCount(ob.perOp * 1e9 / ns.med)
			if summarize(ob.runs["allocs/op"]).max > 0 {
				zeroAllocs = false
			}
		}
		var other []string
		for unit, vs := range ob.runs {
			if !slices.Contains([]string{"ns/op", "B/op", "allocs/op"}, unit) {
				other = append(other, summarize(vs).format(0)+" "+unit)
			}
		}
		slices.Sort(other)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", ob.name, formatNs(ns), pps,
			formatSpread(summarize(ob.runs["B/op"])), formatSpread(summarize(ob.runs["allocs/op"])), strings.Join(other, ", "))
	}
	b.WriteString("\n")
	if mc := find("BenchmarkMillionConnections"); mc != nil {
		s := summarize(mc.runs["bytes/conn"])
		c.check(s.n > 0 && s.med <= 200, "memory per tracked connection (1,000,000 connections) ≤ 200 bytes", s.format(0)+" bytes")
	} else {
		c.check(false, "memory per tracked connection ≤ 200 bytes", "not measured")
	}
	if p := find("BenchmarkPipeline"); p != nil {
		s := summarize(p.runs["ns/op"])
		c.check(p.perOp*1e9/s.med >= 3e6, "decode+tracker+rules (BenchmarkPipeline) ≥ 3 M packets/s on one core", formatCount(p.perOp*1e9/s.med)+" packets/s")
	} else {
		c.check(false, "decode+tracker+rules ≥ 3 M packets/s on one core", "not measured")
	}
	c.check(zeroAllocs, "zero allocations per packet in steady state (every per-packet benchmark)", fmt.Sprint(zeroAllocs))
	if rp := r.replay; len(rp.plain) > 0 {
		fmt.Fprintf(b, "\nReplay: `tcpchaos replay -c configs/lost-final-ack.yaml` over a synthetic capture of %s packets "+
			"(%s connections, 1,000 at a time): %s packets/s; with `--out /dev/null`: %s packets/s (median (min–max), runs: %d).\n",
			formatCount(float64(rp.packets)), formatCount(float64(rp.conns)), formatSpread(summarize(rp.plain)), formatSpread(summarize(rp.out)), len(rp.plain))
	}
}

// formatNs writes nanoseconds with one decimal below a microsecond, with
// thousands separators up to a millisecond, in milliseconds above.
func formatNs(s spread) string {
	switch {
	case s.max >= 1e6:
		return spread{med: s.med / 1e6, min: s.min / 1e6, max: s.max / 1e6, n: s.n}.format(1) + " ms"
	case s.max >= 1000:
		return formatSpread(s)
	}
	return s.format(1)
}

// formatSpread is spread.format with counts written as formatCount does.
func formatSpread(s spread) string {
	lo, hi := formatCount(s.min), formatCount(s.max)
	if lo == hi {
		return formatCount(s.med)
	}
	return fmt.Sprintf("%s (%s–%s)", formatCount(s.med), lo, hi)
}

// formatCount writes a count with thousands separators, or in millions
// with three significant digits from one million on.
func formatCount(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case v >= 1e6:
		return fmt.Sprintf("%.3g M", v/1e6)
	}
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
