package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// column is one way packets cross the router.
type column int

const (
	direct      column = iota // no queue rules
	control                   // tcpchaos, rules on control packets only
	dataRule                  // tcpchaos, a rule on the 9th data segment: short connections queued whole
	dataMetrics               // the same with --metrics, scraped every scrapeEvery
	idleRule                  // tcpchaos, the control rules and an idle rule: every packet queued
	reference                 // bench/reference: every packet queued, naive
	eventsOn                  // tcpchaos, the control config with --events FILE
	toxiproxy                 // Toxiproxy, a stream proxy, no toxics
	numColumns
)

var columnNames = [numColumns]string{"direct", "control config", "data rule", "data rule, --metrics", "idle rule", "reference", "control + --events", "toxiproxy"}

// configs are the tcpchaos columns' configs, under bench/.
var configs = map[column]string{control: "control.yaml", dataRule: "data.yaml", dataMetrics: "data.yaml", idleRule: "idle.yaml", eventsOn: "control.yaml"}

func (c column) String() string { return columnNames[c] }

// referenceQueue is the NFQUEUE number the reference program reads.
const referenceQueue = 200

// workload is one of the measurements of a column.
type workload int

const (
	bulkLoad    workload = iota // one bulk connection
	connsLoad                   // short connections
	latencyLoad                 // sequential connects, timed
	numWorkloads
)

var workloadNames = [numWorkloads]string{"bulk", "short connections", "connect() probe"}

func (w workload) String() string { return workloadNames[w] }

// liveRun is what one column measured in one round.
type liveRun struct {
	bulk    bulkResult
	conns   connsResult
	latency latencyResult
	// costs are the router program's queue crossings and CPU time per
	// workload (nothing known for the direct column).
	costs [numWorkloads]cost
	// counters are nstat counter deltas over the bulk and short-connection
	// loads, probeCounters over the connect() probe; client and server
	// added.
	counters, probeCounters map[string]uint64
	// unseen is what the kernel let through without tcpchaos seeing it
	// (fail-open), from tcpchaos's summary; -1 when not known.
	unseen int64
	// scrapes is what scraping the metrics found (dataMetrics only).
	scrapes scrapes
	// eventsDropped is how many events tcpchaos's writer dropped, from its
	// summary; -1 when not known.
	eventsDropped int64
}

// nstatCounters are the counters whose deltas the suite reports.
var nstatCounters = []string{
	"TcpOutRsts", "TcpRetransSegs", "TcpExtTCPSynRetrans",
	"TcpExtTCPAbortOnData", "TcpExtTCPAbortOnClose", "TcpExtTCPAbortOnMemory",
	"TcpExtTCPAbortOnTimeout", "TcpExtTCPAbortOnLinger", "TcpExtTCPAbortFailed",
}

// lab is the client/router/server topology with the suite's programs.
type lab struct {
	opts options
	tp   *netlab.Topology
	addr string // the server's address and port
	// proxyAddr is where Toxiproxy listens, on the router's client side.
	proxyAddr string
	self      string // this program, re-executed for the workloads
	tmp       string
	ws        *workspace // the namespaces and the temporary directory
	server    *process
	scrape    *scraper // the running column's metrics scraper (nil: none)
}

// openLab makes a workspace (see newWorkspace), builds the topology in it
// and starts the server; close removes it all.
func openLab(ctx context.Context, o options, what, skip, prefix string, tools ...string) (*lab, error) {
	w, err := newWorkspace(what, skip, prefix, tools...)
	if err != nil {
		return nil, err
	}
	l := &lab{opts: o, self: w.self, tmp: w.tmp, ws: w}
	if err := l.setUp(ctx, w.nl); err != nil {
		return nil, errors.Join(err, w.close())
	}
	return l, nil
}

// close stops the server and removes the namespaces and the temporary
// directory.
func (l *lab) close() error { return errors.Join(l.server.stop(), l.ws.close()) }

// setUp builds the topology in the lab's namespaces and starts the server.
func (l *lab) setUp(ctx context.Context, nl *netlab.Lab) error {
	tp, err := nl.Topology()
	if err != nil {
		return err
	}
	l.tp = tp
	l.addr = fmt.Sprintf("%s:%d", tp.Server4, l.opts.port)
	l.proxyAddr = fmt.Sprintf("%s:%d", tp.RouterClient4, l.opts.port)
	// Short connections cycle through ports faster than TIME_WAIT ends:
	// give the client the whole range and let it reuse TIME_WAIT tuples.
	for _, s := range [][2]string{{"net.ipv4.ip_local_port_range", "1024 65000"}, {"net.ipv4.tcp_tw_reuse", "1"}} {
		if err := tp.Client.Sysctl(s[0], s[1]); err != nil {
			return err
		}
	}
	life := l.opts.bulk + 2*ioTimeout
	l.server, err = start(ctx, "server", l.inNS(tp.Server, "-role", "server", "-addr", l.addr, "-d", life.String()), "ready", os.Stdout)
	return err
}

// inNS returns the argv that runs this program with args in ns.
func (l *lab) inNS(ns *netlab.NS, args ...string) []string {
	return ns.Argv(l.self, args...)
}

// measure runs the column's interception, the warm-up and the three
// measurements, and stops the interception.
func (l *lab) measure(ctx context.Context, col column) (run liveRun, err error) {
	if err := l.checkNoQueueRules(); err != nil {
		return run, err
	}
	tool, err := l.startColumn(ctx, col)
	if err != nil {
		return run, err
	}
	defer func() {
		err = errors.Join(err, l.stopColumn(col, tool, &run))
	}()
	addr := l.target(col)
	// The warm-up connection checks the path before anything is measured.
	var warm connsResult
	if err := l.client(ctx, &warm, "-role", "warmup", "-addr", addr); err != nil {
		return run, err
	}
	if warm.OK != 1 {
		return run, fmt.Errorf("%s: warm-up connection failed: %v", col, warm.Errors)
	}
	before, err := l.nstat()
	if err != nil {
		return run, err
	}
	m := meter{ns: l.tp.Router, pid: tool.pid()}
	if err := m.run(&run.costs[bulkLoad], func() (int64, error) {
		return 1, l.client(ctx, &run.bulk, "-role", "bulk", "-addr", addr, "-d", l.opts.bulk.String())
	}); err != nil {
		return run, err
	}
	if err := m.run(&run.costs[connsLoad], func() (int64, error) {
		err := l.client(ctx, &run.conns, "-role", "conns", "-addr", addr, "-d", l.opts.conns.String(), "-workers", strconv.Itoa(l.opts.workers))
		return run.conns.attempts(), err
	}); err != nil {
		return run, err
	}
	mid, err := l.nstat()
	if err != nil {
		return run, err
	}
	if err := m.run(&run.costs[latencyLoad], func() (int64, error) {
		return int64(l.opts.connects), l.client(ctx, &run.latency, "-role", "latency", "-addr", addr, "-n", strconv.Itoa(l.opts.connects))
	}); err != nil {
		return run, err
	}
	after, err := l.nstat()
	if err != nil {
		return run, err
	}
	run.counters, run.probeCounters = delta(before, mid), delta(mid, after)
	return run, nil
}

// target returns the address the column's clients connect to: the
// server's, or Toxiproxy's listener on the router.
func (l *lab) target(col column) string {
	if col == toxiproxy {
		return l.proxyAddr
	}
	return l.addr
}

// meter measures what workloads cost the program pid in ns.
type meter struct {
	ns  *netlab.NS
	pid int // 0: no program (the direct column)
}

// run runs fn, which returns the connections it made, and sets *c to
// what it cost.
func (m meter) run(c *cost, fn func() (int64, error)) error {
	before, err := snapshot(m.ns, m.pid)
	if err != nil {
		return err
	}
	conns, err := fn()
	if err != nil {
		return err
	}
	after, err := snapshot(m.ns, m.pid)
	if err != nil {
		return err
	}
	*c = costBetween(before, after, conns)
	return nil
}

// client runs a client workload in the client namespace and decodes its
// JSON result into v.
func (l *lab) client(ctx context.Context, v any, args ...string) error {
	return runJSON(ctx, l.opts.bulk+l.opts.conns+2*time.Minute, l.inNS(l.tp.Client, args...), v)
}

// runJSON runs argv for at most limit and decodes the JSON result it
// prints into v.
func runJSON(ctx context.Context, limit time.Duration, argv []string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if cerr := ctx.Err(); err != nil && cerr != nil {
		err = cerr
	}
	what := strings.Join(argv[len(argv)-min(len(argv), 6):], " ")
	if err != nil {
		return fmt.Errorf("%s: %w: %s", what, err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("%s: decode result %q: %w", what, out, err)
	}
	return nil
}

// delta returns after − before for each of nstatCounters.
func delta(before, after map[string]uint64) map[string]uint64 {
	d := make(map[string]uint64, len(nstatCounters))
	for _, c := range nstatCounters {
		d[c] = after[c] - before[c]
	}
	return d
}

// nstat returns the client's and the server's counters added up.
func (l *lab) nstat() (map[string]uint64, error) {
	total := make(map[string]uint64)
	for _, ns := range []*netlab.NS{l.tp.Client, l.tp.Server} {
		m, err := ns.Nstat(filepath.Join(l.tmp, "nstat.history"))
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			total[k] += v
		}
	}
	return total, nil
}

// startColumn starts the column's interception in the router namespace
// and returns once it intercepts (nil for the direct column).
func (l *lab) startColumn(ctx context.Context, col column) (*process, error) {
	switch col {
	case control, dataRule, dataMetrics, idleRule, eventsOn:
		p, err := l.startTcpchaos(ctx, filepath.Join(l.opts.root, "bench", configs[col]), l.flags(col)...)
		if err != nil || col != dataMetrics {
			return p, err
		}
		if l.scrape, err = startScraper(p.output()); err != nil {
			return nil, errors.Join(err, p.stop())
		}
		return p, nil
	case reference:
		p, err := start(ctx, "reference", l.tp.Router.Argv(l.opts.reference, "-queue", strconv.Itoa(referenceQueue)), "reference: intercepting", nil)
		if err != nil {
			return nil, err
		}
		if err := l.referenceRules("-A"); err != nil {
			return nil, errors.Join(err, p.stop())
		}
		return p, nil
	case toxiproxy:
		return startToxiproxy(ctx, l.opts.toxiproxy, l.tp.Router, l.proxyAddr, l.addr)
	}
	return nil, nil
}

// startTcpchaos runs tcpchaos with the config cfg in the router namespace
// and returns once it intercepts.
func (l *lab) startTcpchaos(ctx context.Context, cfg string, extra ...string) (*process, error) {
	argv := append([]string{l.opts.tcpchaos, "run", "-c", cfg, "--netns", l.tp.Router.Name}, extra...)
	return start(ctx, "tcpchaos", argv, "tcpchaos: intercepting", nil)
}

// flags returns the `tcpchaos run` flags of a tcpchaos column beyond its
// config: the place of a variant of the control config that differs in
// its flags (such as --events).
func (l *lab) flags(col column) []string {
	switch col {
	case eventsOn:
		return []string{"--events", l.eventsFile()}
	case dataMetrics:
		return []string{"--metrics", "127.0.0.1:0"}
	}
	return nil
}

// eventsFile is where the --events column writes; it is removed after
// each run.
func (l *lab) eventsFile() string { return filepath.Join(l.tmp, "events.jsonl") }

// stopColumn stops the column's interception and checks that no queue
// rule is left behind.
func (l *lab) stopColumn(col column, p *process, run *liveRun) error {
	run.unseen, run.eventsDropped = -1, -1
	if p == nil {
		return nil
	}
	var errs []error
	if col == reference {
		errs = append(errs, l.referenceRules("-D"))
	}
	if l.scrape != nil {
		run.scrapes = l.scrape.stop()
		l.scrape = nil
	}
	errs = append(errs, p.stop())
	if configs[col] != "" {
		run.unseen = parseUnseen(p.output())
		run.eventsDropped = parseEventsDropped(p.output())
	}
	if col == eventsOn {
		errs = append(errs, os.Remove(l.eventsFile()))
	}
	errs = append(errs, l.checkNoQueueRules())
	return errors.Join(errs...)
}

// referenceRules adds (-A) or deletes (-D) the iptables rules that queue
// every packet of the server port for the reference program, both ways.
func (l *lab) referenceRules(op string) error {
	for _, dir := range []string{"--dport", "--sport"} {
		_, err := l.tp.Router.Run("iptables", "-w", "-t", "mangle", op, "FORWARD", "-p", "tcp", dir, strconv.Itoa(l.opts.port),
			"-j", "NFQUEUE", "--queue-num", strconv.Itoa(referenceQueue), "--queue-bypass")
		if err != nil {
			return fmt.Errorf("reference queue rules: %w", err)
		}
	}
	return nil
}

// checkNoQueueRules fails when the router still queues packets: the direct
// column would not be direct.
func (l *lab) checkNoQueueRules() error {
	out, err := l.tp.Router.Run("iptables-save")
	if err != nil {
		return err
	}
	if strings.Contains(out, "NFQUEUE") {
		return fmt.Errorf("router %s: NFQUEUE rules left behind:\n%s", l.tp.Router.Name, out)
	}
	return nil
}

var (
	unseenRE        = regexp.MustCompile(`(\d+) passed unseen`)
	eventsDroppedRE = regexp.MustCompile(`(?m)^events: \d+ written, (\d+) dropped`)
)

// parseUnseen adds up the "N passed unseen" counts of tcpchaos's summary
// (one per queue); -1 when it reports none.
func parseUnseen(out string) int64 { return sumMatches(unseenRE, out) }

// parseEventsDropped returns the events tcpchaos's writer dropped, from
// its summary; -1 when it does not say.
func parseEventsDropped(out string) int64 { return sumMatches(eventsDroppedRE, out) }

// sumMatches adds up the first group of re's matches in out; -1 when there
// is none.
func sumMatches(re *regexp.Regexp, out string) int64 {
	ms := re.FindAllStringSubmatch(out, -1)
	if ms == nil {
		return -1
	}
	var n int64
	for _, m := range ms {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		n += v
	}
	return n
}

// process is a program the suite started; stop ends it by its PID.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the program has exited
	err  error         // its exit status, once done
	out  tail
}

// readyTimeout bounds how long a program may take to say it is ready.
const readyTimeout = 20 * time.Second

// start runs argv and waits until a line of its output (stderr, or stdout
// when readyOn is os.Stdout) contains ready ("": it does not wait). The
// program's output is kept (its tail) for its errors and summary.
func start(ctx context.Context, name string, argv []string, ready string, readyOn *os.File) (*process, error) {
	p := &process{name: name, cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	pr, pw := io.Pipe()
	if readyOn == os.Stdout {
		p.cmd.Stdout, p.cmd.Stderr = pw, &p.out
	} else {
		p.cmd.Stdout, p.cmd.Stderr = &p.out, pw
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	readyc := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		seen := ready == ""
		if seen {
			close(readyc)
		}
		for sc.Scan() {
			line := sc.Text()
			p.out.Write([]byte(line + "\n"))
			if !seen && strings.Contains(line, ready) {
				seen = true
				close(readyc)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-readyc:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("start %s: exited before it was ready: %v\n%s", name, p.err, p.output())
	case <-timer.C:
		return nil, errors.Join(fmt.Errorf("start %s: not ready after %s\n%s", name, readyTimeout, p.output()), p.stop())
	case <-ctx.Done():
		return nil, errors.Join(ctx.Err(), p.stop())
	}
}

// stopTimeout is how long a program has to exit after SIGINT before it is
// killed.
const stopTimeout = 15 * time.Second

// stop sends SIGINT to the program, kills it if it has not exited after
// stopTimeout, and returns its exit error.
func (p *process) stop() error {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("stop %s: killed after %s without exiting\n%s", p.name, stopTimeout, p.output())
		}
	}
	if p.err != nil {
		return fmt.Errorf("stop %s: %w\n%s", p.name, p.err, p.output())
	}
	return nil
}

// pid returns the program's process id, 0 for no program (nil).
func (p *process) pid() int {
	if p == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// output returns the tail of what the program wrote.
func (p *process) output() string { return p.out.String() }

// tail keeps the last tailSize bytes written to it. It is safe for
// concurrent use.
type tail struct {
	mu sync.Mutex
	b  []byte
}

const tailSize = 64 << 10

// Write appends b, dropping the oldest bytes beyond tailSize.
func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, b...)
	if over := len(t.b) - tailSize; over > 0 {
		t.b = t.b[over:]
	}
	return len(b), nil
}

// String returns the bytes kept.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
