package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tcpchaos/tcpchaos/ctlclient"
)

// The soak workload (-soak D, make soak): tcpchaos in the router runs
// bench/soak.yaml for D while the client makes short connections at a
// steady rate and keeps a few long ones open; every -soak-every the soak
// reloads the config (in turn: the file rewritten with a changed delay,
// SIGHUP, `ctl reload`) and, half a period later, switches the rule
// soakToggled off or on through the control socket. Every soakSampleEvery
// it reads tcpchaos's metrics. It fails when a watched series grows
// without bound, a reload is refused or lost, a packet is left without a
// verdict, a client connection fails, a rule never fires, or tcpchaos
// does not run through and exit 0.

// soakSampleEvery is how often the soak reads tcpchaos's metrics.
const soakSampleEvery = 2 * time.Second

// soakToggled is the rule of bench/soak.yaml switched off and on through
// the control socket; soakReloaded the one whose delay the file rewrites
// change between soakDelays.
const (
	soakToggled  = "lose-final-ack"
	soakReloaded = "slow-syn-ack"
)

var soakDelays = [2]string{"delay: 30ms", "delay: 45ms"}

// soakSeries are the gauges the soak watches for growth, with how much
// each may rise from the middle third of the run to the last (see
// checkGrowth): memory and goroutines swing with the garbage collector
// and the connections in flight, tracked connections with the rate.
var soakSeries = []struct {
	name  string
	unit  float64 // the table shows value/unit
	prec  int
	value func(soakSample) float64
	bound bound
}{
	{"RSS MiB", 1 << 20, 1, func(s soakSample) float64 { return s.rss }, bound{0.10, 4 << 20}},
	{"goroutines", 1, 0, func(s soakSample) float64 { return s.goroutines }, bound{0.10, 10}},
	{"open fds", 1, 0, func(s soakSample) float64 { return s.fds }, bound{0.10, 5}},
	{"tracked conns", 1, 0, func(s soakSample) float64 { return s.tracked }, bound{0.25, 25}},
	{"held packets", 1, 0, func(s soakSample) float64 { return s.held }, bound{0.50, 10}},
	{"queue waiting", 1, 0, func(s soakSample) float64 { return s.waiting }, bound{0.50, 10}},
}

// soakRun is what one soak saw.
type soakRun struct {
	d           time.Duration
	rate, long  int
	every       time.Duration
	samples     []soakSample
	final       soakSample // after the traffic ended and the queue drained
	client      soakResult
	reloads     [3]int // triggered: file rewrites, SIGHUPs, ctl reloads
	toggles     int
	steerErrors []string // failed steering requests (the first few)
	steerFailed int
	exitErr     error    // tcpchaos's exit (nil: status 0)
	rules       []string // the rules' names, in order
}

// soak runs the soak workload, prints its report and writes it to o.out;
// it returns how many of its checks failed.
func soak(ctx context.Context, o options) (failed int, err error) {
	if o.soak < minGrowthSamples*soakSampleEvery {
		return 0, fmt.Errorf("-soak %s: want at least %s (%d samples)", o.soak, minGrowthSamples*soakSampleEvery, minGrowthSamples)
	}
	if o.soakEvery <= 0 || o.soakRate < 1 || o.soakLong < 0 {
		return 0, fmt.Errorf("-soak-every %s, -soak-rate %d, -soak-long %d: want a positive period, a rate of at least 1 and no negative count", o.soakEvery, o.soakRate, o.soakLong)
	}
	if o.root, err = moduleRoot(); err != nil {
		return 0, err
	}
	o.tcpchaos = filepath.Join(o.root, "bin", "tcpchaos")
	if o.build {
		if err := build(ctx, o.root, "./cmd/tcpchaos", o.tcpchaos); err != nil {
			return 0, err
		}
	}
	l, err := openLab(ctx, o, "soak", "-soak 0", "tcpchaos-soak", "ip", "iptables", "iptables-save")
	if err != nil {
		return 0, err
	}
	defer func() { err = errors.Join(err, l.close()) }()
	fmt.Fprintf(os.Stderr, "bench: soak for %s, %d short connections/s, %d long ones, steering every %s\n", o.soak, o.soakRate, o.soakLong, o.soakEvery)
	run, err := l.soak(ctx)
	if err != nil {
		return 0, err
	}
	text, failed := run.render(describeMachine(), time.Now().UTC())
	return failed, publish(text, o.out)
}

// soak runs tcpchaos and the traffic in l for l.opts.soak, steering and
// sampling, and stops tcpchaos.
func (l *lab) soak(ctx context.Context) (*soakRun, error) {
	o := l.opts
	run := &soakRun{d: o.soak, rate: o.soakRate, long: o.soakLong, every: o.soakEvery}
	base, err := os.ReadFile(filepath.Join(o.root, "bench", "soak.yaml"))
	if err != nil {
		return nil, err
	}
	st, err := newSteerer(string(base), filepath.Join(l.tmp, "config"), filepath.Join(l.tmp, "control.sock"))
	if err != nil {
		return nil, err
	}
	defer st.ctl.Close()
	p, err := l.startTcpchaos(ctx, st.config, "--metrics", "127.0.0.1:0", "--control", st.socket)
	if err != nil {
		return nil, err
	}
	err = l.drive(ctx, run, p, st)
	run.exitErr = p.stop()
	if err != nil {
		return nil, errors.Join(err, run.exitErr)
	}
	return run, l.checkNoQueueRules()
}

// drive asks tcpchaos p for its metrics address, its pid and its rules,
// runs the traffic, steers and samples until the traffic ends, and waits
// for the queue to drain.
func (l *lab) drive(ctx context.Context, run *soakRun, p *process, st *steerer) error {
	o := l.opts
	m := metricsURL.FindStringSubmatch(p.output())
	if m == nil {
		return fmt.Errorf("no metrics address in tcpchaos's output:\n%s", p.output())
	}
	url := m[1]
	if err := st.ask(ctx, run); err != nil {
		return err
	}
	clientDone := make(chan error, 1)
	go func() {
		argv := l.inNS(l.tp.Client, "-role", "soak-client", "-addr", l.addr, "-d", o.soak.String(),
			"-n", strconv.Itoa(o.soakRate), "-workers", strconv.Itoa(o.soakLong))
		clientDone <- runJSON(ctx, o.soak+2*time.Minute, argv, &run.client)
	}()
	begin := time.Now()
	sample := time.NewTicker(soakSampleEvery)
	defer sample.Stop()
	steer := time.NewTicker(o.soakEvery / 2)
	defer steer.Stop()
	lastNote := begin
	for step := 0; ; {
		select {
		case err := <-clientDone:
			if err != nil {
				return fmt.Errorf("soak client: %w", err)
			}
			return drain(ctx, run, url)
		case <-p.done:
			return fmt.Errorf("tcpchaos exited during the soak (after %s): %v\n%s", time.Since(begin).Round(time.Second), p.err, p.output())
		case <-ctx.Done():
			return ctx.Err()
		case <-steer.C:
			if step%2 == 0 {
				run.note(st.reload(ctx, step/2%3), &run.reloads[step/2%3])
			} else {
				run.note(st.toggle(ctx), &run.toggles)
			}
			step++
		case <-sample.C:
			s, err := scrapeSoak(url)
			if err != nil {
				return err
			}
			s.at = time.Since(begin)
			run.samples = append(run.samples, s)
			if time.Since(lastNote) >= 30*time.Second {
				lastNote = time.Now()
				fmt.Fprintf(os.Stderr, "bench: soak %s: %s\n", s.at.Round(time.Second), s.brief())
			}
		}
	}
}

// soakDrain bounds the wait, after the traffic, for the queue to empty and
// the last reload to be counted.
const soakDrain = 10 * time.Second

// drain waits for the queue to drain and the reloads to be counted, and
// takes the final sample.
func drain(ctx context.Context, run *soakRun, url string) error {
	want := float64(run.reloadsTriggered())
	deadline := time.Now().Add(soakDrain)
	for {
		s, err := scrapeSoak(url)
		if err != nil {
			return err
		}
		run.final = s
		drained := s.waiting == 0 && s.held == 0 && s.reloadsOK+s.reloadsRefused >= want
		if drained || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(soakSampleEvery / 4):
		}
	}
}

// note counts a steering request, or keeps its error.
func (r *soakRun) note(err error, count *int) {
	if err == nil {
		*count++
		return
	}
	r.steerFailed++
	if len(r.steerErrors) < maxErrors {
		r.steerErrors = append(r.steerErrors, err.Error())
	}
}

func (r *soakRun) reloadsTriggered() int { return r.reloads[0] + r.reloads[1] + r.reloads[2] }

// scrapeSoak reads tcpchaos's metrics once.
func scrapeSoak(url string) (soakSample, error) {
	c := http.Client{Timeout: soakSampleEvery}
	resp, err := c.Get(url)
	if err != nil {
		return soakSample{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	return parseSoakSample(resp.Body)
}

// brief is a progress line.
func (s soakSample) brief() string {
	return fmt.Sprintf("RSS %.1f MiB, %.0f goroutines, %.0f fds, %.0f tracked, %.0f held, %.0f reloads ok",
		s.rss/(1<<20), s.goroutines, s.fds, s.tracked, s.held, s.reloadsOK)
}

// steerer steers the soak's tcpchaos: its config file and control socket.
type steerer struct {
	base, config, socket string
	ctl                  *ctlclient.Client
	pid                  int // tcpchaos's, for SIGHUP
	rewrites             int
	disabled             bool // soakToggled is off
}

// newSteerer writes the config base into dir (a directory of its own, so
// that the file watch sees nothing else change) and names the socket.
func newSteerer(base, dir, socket string) (*steerer, error) {
	if n := strings.Count(base, soakDelays[0]); n != 1 {
		return nil, fmt.Errorf("bench/soak.yaml: %q appears %d times, want once (the soak rewrites it)", soakDelays[0], n)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	st := &steerer{base: base, config: filepath.Join(dir, "soak.yaml"), socket: socket, ctl: ctlclient.New(socket)}
	return st, os.WriteFile(st.config, []byte(base), 0o644)
}

// ask finds tcpchaos's pid (for SIGHUP) and its rules' names (for run)
// through the control socket.
func (st *steerer) ask(ctx context.Context, run *soakRun) error {
	ctx, cancel := context.WithTimeout(ctx, soakRequestTimeout)
	defer cancel()
	status, err := st.ctl.Status(ctx)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	st.pid = status.PID
	rules, err := st.ctl.Rules(ctx)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	for _, r := range rules {
		run.rules = append(run.rules, r.Name)
	}
	return nil
}

// soakRequestTimeout bounds a control request.
const soakRequestTimeout = 5 * time.Second

// reload reloads the config the way-th way: 0 rewrites the file with the
// other delay of soakReloaded (atomically: the watch reloads it), 1 sends
// SIGHUP, 2 asks the control socket.
func (st *steerer) reload(ctx context.Context, way int) error {
	switch way {
	case 0:
		st.rewrites++
		text := strings.Replace(st.base, soakDelays[0], soakDelays[st.rewrites%2], 1)
		tmp := st.config + ".new"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, st.config)
	case 1:
		return syscall.Kill(st.pid, syscall.SIGHUP)
	}
	ctx, cancel := context.WithTimeout(ctx, soakRequestTimeout)
	defer cancel()
	_, err := st.ctl.Reload(ctx)
	return err
}

// toggle switches soakToggled off when it is on and on when it is off,
// and checks that the answer says so.
func (st *steerer) toggle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, soakRequestTimeout)
	defer cancel()
	r, err := st.ctl.SetRuleEnabled(ctx, soakToggled, st.disabled)
	if err != nil {
		return err
	}
	if r.Enabled != st.disabled {
		return fmt.Errorf("rules %s: enabled %v after asking for %v", soakToggled, r.Enabled, st.disabled)
	}
	st.disabled = !st.disabled
	return nil
}

// soakTableRows is how many samples the report's table shows at most
// (evenly spread, the last one always).
const soakTableRows = 16

// render returns the soak's report and how many checks failed.
func (r *soakRun) render(machine string, date time.Time) (string, int) {
	var b strings.Builder
	c := checks{b: &b}
	fmt.Fprintf(&b, "Machine: %s. Run %s.\n\n", machine, date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Soak: %s through tcpchaos (bench/soak.yaml) in the router; %d short connections/s and %d long ones (each open %s, a byte each way every %s); "+
		"every %s a reload (file rewritten, SIGHUP, ctl reload in turn) and, between reloads, %s switched off or on through the control socket; metrics read every %s.\n\n",
		r.d, r.rate, r.long, longLife(r.d), longExchangeEvery, r.every, soakToggled, soakSampleEvery)
	r.renderTable(&b)
	b.WriteString("\n")
	for _, s := range soakSeries {
		xs := r.series(s.value)
		fmt.Fprintf(&b, "    %-14s %s  %.*f–%.*f\n", s.name, sparkline(xs, 60), s.prec, slices.Min(xs)/s.unit, s.prec, slices.Max(xs)/s.unit)
	}
	cl, f := r.client, r.final
	failed := func(c connsResult) int64 { return c.attempts() - c.OK }
	fmt.Fprintf(&b, "\nClient: %d short connections ok, %d failed, %d ticks skipped; %d long connections ok, %d failed, %d exchanges. "+
		"Rule hits: %s. Reloads: %d file rewrites, %d SIGHUPs, %d ctl reloads; %d toggles.\n\n",
		cl.Short.OK, failed(cl.Short), cl.Skipped, cl.Long.OK, failed(cl.Long), cl.Exchanges,
		formatHits(f.hits), r.reloads[0], r.reloads[1], r.reloads[2], r.toggles)
	b.WriteString("Checks:\n\n")
	for _, s := range soakSeries {
		g, err := checkGrowth(r.series(s.value), s.bound)
		if err != nil {
			c.check(false, s.name+" bounded", err.Error())
			continue
		}
		c.check(!g.grew, s.name+" bounded", fmt.Sprintf("max of the last third %.*f, of the middle third %.*f (allowed: +%.0f %% +%.*f)",
			s.prec, g.last/s.unit, s.prec, g.mid/s.unit, s.bound.rel*100, s.prec, s.bound.abs/s.unit))
	}
	want := r.reloadsTriggered()
	c.check(f.reloadsRefused == 0 && f.reloadsOK == float64(want), "every reload done",
		fmt.Sprintf("%.0f ok, %.0f refused, %d triggered", f.reloadsOK, f.reloadsRefused, want))
	c.check(r.steerFailed == 0, "every steering request answered", fmt.Sprintf("%d failed", r.steerFailed)+withReasons(r.steerErrors))
	c.check(f.unseen == 0 && f.userDropped == 0 && f.kernelDropped == 0 && f.verdictErr == 0,
		"every queued packet got tcpchaos's verdict", fmt.Sprintf("%.0f passed unseen, %.0f user-dropped, %.0f kernel-dropped, %.0f verdict errors",
			f.unseen, f.userDropped, f.kernelDropped, f.verdictErr))
	c.check(f.waiting == 0 && f.held == 0, "nothing left in the queue after the traffic", fmt.Sprintf("%.0f waiting, %.0f held", f.waiting, f.held))
	failures := failed(cl.Short) + failed(cl.Long)
	c.check(failures == 0 && cl.Skipped == 0 && cl.Short.OK > 0 && cl.Long.OK >= int64(r.long), "every client connection went through",
		fmt.Sprintf("%d failed, %d ticks skipped", failures, cl.Skipped)+withReasons(append(cl.Short.Errors, cl.Long.Errors...)))
	var idle []string
	for _, name := range r.rules {
		if f.hits[name] == 0 {
			idle = append(idle, name)
		}
	}
	fired := fmt.Sprintf("all %d rules hit", len(r.rules))
	if len(idle) > 0 {
		fired = strings.Join(idle, ", ") + " never"
	}
	c.check(len(idle) == 0, "every rule fired", fired)
	exit := "0"
	if r.exitErr != nil {
		exit = r.exitErr.Error()
	}
	c.check(r.exitErr == nil, "tcpchaos ran through and exited 0", exit)
	return b.String(), c.missed
}

// withReasons returns ": reason; reason…", "" for none.
func withReasons(reasons []string) string {
	if len(reasons) == 0 {
		return ""
	}
	return ": " + strings.Join(reasons, "; ")
}

// series returns one value of every sample.
func (r *soakRun) series(value func(soakSample) float64) []float64 {
	xs := make([]float64, len(r.samples))
	for i, s := range r.samples {
		xs[i] = value(s)
	}
	return xs
}

// renderTable writes the samples over time, at most soakTableRows of them.
func (r *soakRun) renderTable(b *strings.Builder) {
	b.WriteString("| t |")
	for _, s := range soakSeries {
		fmt.Fprintf(b, " %s |", s.name)
	}
	b.WriteString(" reloads ok/refused |\n|---|")
	b.WriteString(strings.Repeat("---:|", len(soakSeries)+1) + "\n")
	n := len(r.samples)
	for i := range min(n, soakTableRows) {
		smp := r.samples[(i+1)*n/min(n, soakTableRows)-1]
		fmt.Fprintf(b, "| %s |", smp.at.Round(time.Second))
		for _, s := range soakSeries {
			fmt.Fprintf(b, " %.*f |", s.prec, s.value(smp)/s.unit)
		}
		fmt.Fprintf(b, " %.0f/%.0f |\n", smp.reloadsOK, smp.reloadsRefused)
	}
}

// formatHits writes "name n, …" in name order.
func formatHits(hits map[string]float64) string {
	names := make([]string, 0, len(hits))
	for name := range hits {
		names = append(names, name)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %.0f", name, hits[name])
	}
	return strings.Join(parts, ", ")
}
