package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// blackholeRun is what one blackholed bulk transfer cost: what the kernel
// dropped of its dark packets, and what still reached tcpchaos, from its
// summary.
type blackholeRun struct {
	bulk bulkResult
	// user counts the dark connection's packets tcpchaos dropped itself
	// (the one that started the blackhole, those already queued, RSTs);
	// kernel and kernelBytes those the kernel dropped before queueing.
	user, kernel, kernelBytes, healed uint64
}

// maxUserDark bounds the dark packets that may reach tcpchaos: one burst
// of its reader.
const maxUserDark = 128

// darkRE reads the summary's blackhole line.
var darkRE = regexp.MustCompile(`blackhole: (\d+) packets dropped in user space; (\d+) packets \((\d+) bytes\) dropped in the kernel; (\d+) healed`)

// runBlackhole builds a lab of its own and measures one blackholed bulk
// transfer in it.
func runBlackhole(ctx context.Context, o options) (run blackholeRun, err error) {
	l, err := openLab(ctx, o, "blackholed bulk transfer", "-live=false", "tcpchaos-bench-dark", "ip", "iptables", "iptables-save", "nstat")
	if err != nil {
		return run, err
	}
	defer func() { err = errors.Join(err, l.close()) }()
	return l.measureBlackhole(ctx)
}

// measureBlackhole runs tcpchaos with bench/blackhole.yaml and one bulk
// transfer, which goes dark for 2 s on the way.
func (l *lab) measureBlackhole(ctx context.Context) (run blackholeRun, err error) {
	if err := l.checkNoQueueRules(); err != nil {
		return run, err
	}
	p, err := l.startTcpchaos(ctx, filepath.Join(l.opts.root, "bench", "blackhole.yaml"))
	if err != nil {
		return run, err
	}
	err = l.client(ctx, &run.bulk, "-role", "bulk", "-addr", l.addr, "-d", l.opts.bulk.String())
	if err = errors.Join(err, p.stop(), l.checkNoQueueRules()); err != nil {
		return run, err
	}
	m := darkRE.FindStringSubmatch(p.output())
	if m == nil {
		return run, fmt.Errorf("blackhole: no blackhole line in tcpchaos's summary:\n%s", p.output())
	}
	for i, v := range []*uint64{&run.user, &run.kernel, &run.kernelBytes, &run.healed} {
		*v, _ = strconv.ParseUint(m[i+1], 10, 64)
	}
	return run, nil
}

func (r *report) renderBlackhole(b *strings.Builder, c *checks) {
	d := r.dark
	fmt.Fprintf(b, "Blackholed bulk transfer (bench/blackhole.yaml: dark both ways for 2 s from the server's 1000th data segment, "+
		"then healed; one bulk connection, %s): the client received %.1f MB; of the dark connection's packets, "+
		"%d (%.1f MB) were dropped in the kernel, %d reached tcpchaos (the matching one, those already queued); "+
		"%d heal(s).\n\n", r.opts.bulk, float64(d.bulk.Bytes)/1e6, d.kernel, float64(d.kernelBytes)/1e6, d.user, d.healed)
	// What reaches user space is fixed per blackhole: the packets queued
	// before the matching packet's verdict, at most what the reader takes
	// in one burst (maxBurst in nfq), however long the connection stays
	// dark and whatever it sends.
	c.check(d.kernel > 0 && d.user <= maxUserDark, fmt.Sprintf("a blackholed bulk transfer costs no user-space work: the kernel drops its dark packets, at most %d reach tcpchaos (its burst)", maxUserDark),
		fmt.Sprintf("%d in the kernel, %d in user space", d.kernel, d.user))
	c.check(d.healed == 1, "the blackhole heals", fmt.Sprintf("%d heals", d.healed))
	b.WriteString("\n")
}
