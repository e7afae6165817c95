package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The two-queue figure: short connections/s from many client addresses
// (worker w connects from address w mod -sources) with tcpchaos on one
// queue (bench/control.yaml) and on two (bench/two-queues.yaml, which the
// kernel balances by address), and direct, interleaved round by round.

// spreadColumn is one way of crossing the router in the two-queue figure.
type spreadColumn int

const (
	spreadDirect spreadColumn = iota // no queue rules
	oneQueue                         // tcpchaos, control config, one queue
	twoQueues                        // the same on two queues
	numSpreadColumns
)

var spreadNames = [numSpreadColumns]string{"direct", "1 queue", "2 queues"}

func (c spreadColumn) String() string { return spreadNames[c] }

// spreadRun is what one column of the figure measured in one round.
type spreadRun struct {
	conns  connsResult
	cost   cost
	unseen int64 // -1 when not known
}

// firstSource is the first of the client's extra addresses; the others
// follow it.
var firstSource = netip.MustParseAddr("198.18.1.100")

// runSpread builds a lab of its own whose client has o.sources addresses
// and measures the figure's columns in o.rounds rounds.
func runSpread(ctx context.Context, o options) (runs [][numSpreadColumns]spreadRun, err error) {
	if o.sources < 1 || o.sources > 100 {
		return nil, fmt.Errorf("-sources %d: want 1 to 100", o.sources)
	}
	l, err := openLab(ctx, o, "two-queue figure", "-two-queues=false", "tcpchaos-bench-spread", "ip", "iptables", "iptables-save", "nstat")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, l.close()) }()
	sources := make([]string, o.sources)
	var script []string
	for i, a := 0, firstSource; i < o.sources; i, a = i+1, a.Next() {
		sources[i] = a.String()
		script = append(script, fmt.Sprintf("addr add %s/24 dev %s", a, l.tp.HostIf))
	}
	if err := l.tp.Client.IP(strings.Join(script, "\n")); err != nil {
		return nil, err
	}
	from := strings.Join(sources, ",")
	for round := range o.rounds {
		var rr [numSpreadColumns]spreadRun
		for col := range numSpreadColumns {
			if rr[col], err = l.measureSpread(ctx, col, from); err != nil {
				return runs, fmt.Errorf("two-queue figure, round %d, %s: %w", round+1, col, err)
			}
			fmt.Fprintf(os.Stderr, "bench: round %d %-8s %.0f conn/s from %d addresses, %s crossings/connection\n",
				round+1, col, rr[col].connsPerSec(), o.sources, summarize([]float64{rr[col].cost.crossingsPerConn()}).format(1))
		}
		runs = append(runs, rr)
	}
	return runs, nil
}

// measureSpread runs the short-connection load from the addresses of from
// through the column's interception.
func (l *lab) measureSpread(ctx context.Context, col spreadColumn, from string) (run spreadRun, err error) {
	run.unseen = -1
	if err := l.checkNoQueueRules(); err != nil {
		return run, err
	}
	var tool *process
	if col != spreadDirect {
		cfg := "control.yaml"
		if col == twoQueues {
			cfg = "two-queues.yaml"
		}
		if tool, err = l.startTcpchaos(ctx, filepath.Join(l.opts.root, "bench", cfg)); err != nil {
			return run, err
		}
		defer func() {
			err = errors.Join(err, tool.stop(), l.checkNoQueueRules())
			run.unseen = parseUnseen(tool.output())
		}()
	}
	m := meter{ns: l.tp.Router, pid: tool.pid()}
	err = m.run(&run.cost, func() (int64, error) {
		err := l.client(ctx, &run.conns, "-role", "conns", "-addr", l.addr, "-d", l.opts.conns.String(),
			"-workers", strconv.Itoa(l.opts.workers), "-from", from)
		return run.conns.attempts(), err
	})
	return run, err
}

func (r spreadRun) connsPerSec() float64 { return r.conns.perSec() }

// parseSources parses -from: comma-separated IP addresses ("": none).
func parseSources(list string) ([]net.IP, error) {
	if list == "" {
		return nil, nil
	}
	var ips []net.IP
	for s := range strings.SplitSeq(list, ",") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("-from: %w", err)
		}
		ips = append(ips, a.AsSlice())
	}
	return ips, nil
}

// renderSpread writes the two-queue figure.
func (r *report) renderSpread(b *strings.Builder) {
	o := r.opts
	fmt.Fprintf(b, "Short connections from %d client addresses (%d workers, %s), tcpchaos's control config on 1 and on 2 queues "+
		"(`intercept.queues: 2`, balanced by address); median (min–max) over %d rounds:\n\n", o.sources, o.workers, o.conns, len(r.spread))
	fmt.Fprintf(b, "| | %s | %s | %s |\n|---|---:|---:|---:|\n", spreadDirect, oneQueue, twoQueues)
	row := func(name string, cell func(col spreadColumn) string) {
		fmt.Fprintf(b, "| %s |", name)
		for col := range numSpreadColumns {
			fmt.Fprintf(b, " %s |", cell(col))
		}
		b.WriteString("\n")
	}
	spreadRow := func(name string, prec int, f func(spreadRun) float64) {
		row(name, func(col spreadColumn) string {
			var xs []float64
			for _, rr := range r.spread {
				xs = append(xs, f(rr[col]))
			}
			return summarize(xs).format(prec)
		})
	}
	total := func(col spreadColumn, f func(spreadRun) int64) (n int64) {
		for _, rr := range r.spread {
			n += f(rr[col])
		}
		return n
	}
	spreadRow("short connections/s", 0, spreadRun.connsPerSec)
	spreadRow("queue crossings per connection", 1, func(s spreadRun) float64 { return s.cost.crossingsPerConn() })
	spreadRow("CPU per crossing, µs", 1, func(s spreadRun) float64 { return s.cost.cpuPerCrossing() })
	row("client errors (total)", func(col spreadColumn) string {
		return fmt.Sprint(total(col, func(s spreadRun) int64 { return s.conns.attempts() - s.conns.OK }))
	})
	row("packets passed unseen, fail-open (total)", func(col spreadColumn) string {
		if col == spreadDirect {
			return "—"
		}
		if total(col, func(s spreadRun) int64 { return min(s.unseen, 0) }) < 0 {
			return "not reported"
		}
		return fmt.Sprint(total(col, func(s spreadRun) int64 { return s.unseen }))
	})
	var ratios []float64
	for _, rr := range r.spread {
		ratios = append(ratios, rr[twoQueues].connsPerSec()/rr[oneQueue].connsPerSec())
	}
	fmt.Fprintf(b, "\n2 queues / 1 queue, short connections/s: %s.\n\n", summarize(ratios).format(2))
}
