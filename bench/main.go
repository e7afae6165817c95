// Command bench is tcpchaos's benchmark suite. As root, from the
// repository root:
//
//	go run ./bench            # or: make bench
//	go run ./bench -smoke     # CI-sized: one short round, no target checks
//	go run ./bench -live=false -offline=false   # the conntrack oracle alone
//	go run ./bench -soak 10m  # the soak workload instead (make soak; soak.go)
//
// It builds bin/tcpchaos, bin/bench-reference (bench/reference) and, once,
// Toxiproxy (toxiproxy.go), builds a client/router/server topology of
// network namespaces, and measures, in rounds that interleave the columns
// (direct, tcpchaos with a control-packet config, tcpchaos with a rule on
// data, tcpchaos with the control config and an idle rule, the naive
// reference program, tcpchaos with --events, Toxiproxy):
// bulk TCP throughput, short connections per second, connect() time and
// time to the first response byte, and per workload the queue crossings
// and CPU time of the program in the router (usage.go). Then, each in a
// lab of its own, short connections from many client addresses on one and
// two queues (spread.go) and a SYN flood (flood.go). Then it runs the
// offline figures: the tracker, rules and pipeline Go benchmarks on one
// core, and `tcpchaos replay` over a large synthetic capture. Then the
// conntrack oracle (bench/oracle.go): 10,000 connections of mixed shapes,
// the tracker's story of each compared with nf_conntrack's. It prints a
// markdown table of medians with their spread, the targets met or missed,
// and writes the same to -out.
//
// Every program it starts is stopped by its PID, and the namespaces are
// removed on the way out, on Ctrl-C too. The exit status is 1 when the
// suite fails, 3 when it completes but misses a target (never with -smoke).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// options are the suite's settings.
type options struct {
	smoke         bool
	rounds        int
	bulk, conns   time.Duration
	workers       int
	connects      int
	replayPackets int
	benchtime     string
	port          int
	out           string
	live, offline bool
	oracle        bool
	oracleConns   int
	oracleWorkers int
	build         bool
	withToxiproxy bool
	flood         bool
	floodSYNs     int
	twoQueues     bool
	sources       int
	soak          time.Duration // the soak's length (0: the suite instead)
	soakEvery     time.Duration
	soakRate      int
	soakLong      int

	root                           string   // the module's root directory
	tcpchaos, reference, toxiproxy string   // the programs' paths
	columns                        []column // the live columns measured
}

func main() {
	var o options
	var ro roleOptions
	flag.StringVar(&ro.role, "role", "", "internal: run one workload (server, warmup, bulk, conns, latency, flood, oracle-server, oracle-client, soak-client)")
	flag.StringVar(&ro.addr, "addr", "", "internal: the server's address")
	flag.DurationVar(&ro.d, "d", 0, "internal: the workload's duration")
	flag.IntVar(&ro.n, "n", 0, "internal: the number of connects (flood: of SYNs; soak-client: short connections a second, -workers: long connections)")
	flag.StringVar(&ro.from, "from", "", "internal: comma-separated source addresses of the short-connection workers")
	flag.BoolVar(&o.smoke, "smoke", false, "CI-sized run: 1 round, 1 s measurements, 200 connects, 5,000 flood SYNs, -benchtime 100ms, 20,000 replayed packets; targets shown, not asserted")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of every live column (medians over rounds)")
	flag.DurationVar(&o.bulk, "bulk", 5*time.Second, "bulk throughput measurement per column and round")
	flag.DurationVar(&o.conns, "conns", 5*time.Second, "short-connection load per column and round")
	flag.IntVar(&o.workers, "workers", 8, "concurrent short-connection workers")
	flag.IntVar(&o.connects, "connects", 2000, "sequential connects timed per column and round")
	flag.IntVar(&o.replayPackets, "replay-packets", 1_000_000, "packets of the synthetic replay capture")
	flag.StringVar(&o.benchtime, "benchtime", "1s", "go test -benchtime of the offline benchmarks")
	flag.IntVar(&o.port, "port", 8080, "the server port (bench/*.yaml intercept it)")
	flag.StringVar(&o.out, "out", "bin/bench.md", "also write the report to `FILE` (\"\": don't)")
	flag.BoolVar(&o.live, "live", true, "run the live measurements (namespaces, root)")
	flag.BoolVar(&o.offline, "offline", true, "run the offline figures (Go benchmarks, replay)")
	flag.BoolVar(&o.oracle, "oracle", true, "run the conntrack oracle workload (namespaces, root; conntrack(8))")
	flag.IntVar(&o.oracleConns, "oracle-conns", 10_000, "connections of the conntrack oracle workload")
	flag.IntVar(&o.oracleWorkers, "oracle-workers", 8, "concurrent connections of the conntrack oracle workload")
	flag.BoolVar(&o.build, "build", true, "build bin/tcpchaos and bin/bench-reference first")
	flag.BoolVar(&o.withToxiproxy, "toxiproxy", true, "measure the toxiproxy column (Toxiproxy "+toxiproxyVersion+", built into bin/ once)")
	flag.BoolVar(&o.flood, "flood", true, "run the SYN flood workload (raw socket in the client namespace)")
	flag.IntVar(&o.floodSYNs, "flood-syns", 200_000, "SYNs of the flood, sent as fast as the machine allows within "+floodLimit.String())
	flag.BoolVar(&o.twoQueues, "two-queues", true, "measure short connections/s from many client addresses with intercept.queues 1 and 2")
	flag.IntVar(&o.sources, "sources", 16, "client addresses of the two-queue figure")
	flag.DurationVar(&o.soak, "soak", 0, "run the soak workload for `D` instead of the suite (at least 12s; make soak: 10m)")
	flag.DurationVar(&o.soakEvery, "soak-every", 3*time.Second, "the soak's reload period; a rule is toggled as often, between reloads")
	flag.IntVar(&o.soakRate, "soak-rate", 50, "the soak's short connections a second")
	flag.IntVar(&o.soakLong, "soak-long", 4, "the soak's long connections open at a time")
	flag.Parse()

	if ro.role != "" {
		ro.workers = o.workers
		if err := runRole(ro); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if o.smoke {
		o.rounds, o.bulk, o.conns, o.connects = 1, time.Second, time.Second, 200
		o.replayPackets, o.benchtime, o.oracleConns = 20_000, "100ms", 300
		o.floodSYNs = 5_000
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if o.soak != 0 {
		failed, err := soak(ctx, o)
		stop()
		if err == nil && failed > 0 {
			err = fmt.Errorf("soak: %d checks failed", failed)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	missed, err := suite(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if missed > 0 && !o.smoke {
		fmt.Fprintf(os.Stderr, "bench: %d targets missed\n", missed)
		os.Exit(3)
	}
}

// roleOptions are the settings of a re-executed bench (-role).
type roleOptions struct {
	role, addr string
	d          time.Duration
	n, workers int
	from       string
}

// runRole runs one workload of a re-executed bench (see workload.go).
func runRole(ro roleOptions) error {
	switch ro.role {
	case "server":
		return serve(ro.addr, ro.d)
	case "warmup":
		var r connsResult
		r.add(echo(ro.addr))
		return printJSON(r)
	case "bulk":
		r, err := bulk(ro.addr, ro.d)
		if err != nil {
			return err
		}
		return printJSON(r)
	case "conns":
		sources, err := parseSources(ro.from)
		if err != nil {
			return err
		}
		return printJSON(conns(ro.addr, ro.workers, ro.d, sources))
	case "latency":
		return printJSON(latency(ro.addr, ro.n))
	case "flood":
		r, err := flood(ro.addr, ro.n, ro.d)
		if err != nil {
			return err
		}
		return printJSON(r)
	case "oracle-server":
		return oracleServe(ro.addr, ro.d)
	case "oracle-client":
		return oracleClient(ro.addr, ro.n, ro.workers)
	case "soak-client":
		r, err := soakClient(ro.addr, ro.d, ro.n, ro.workers)
		if err != nil {
			return err
		}
		return printJSON(r)
	}
	return fmt.Errorf("unknown role %q", ro.role)
}

// suite runs everything o asks for, prints the report and writes it to
// o.out; it returns how many targets were missed.
func suite(ctx context.Context, o options) (int, error) {
	if o.rounds < 1 {
		return 0, fmt.Errorf("-rounds %d: want at least 1", o.rounds)
	}
	root, err := moduleRoot()
	if err != nil {
		return 0, err
	}
	o.root = root
	o.tcpchaos = filepath.Join(root, "bin", "tcpchaos")
	o.reference = filepath.Join(root, "bin", "bench-reference")
	o.toxiproxy = toxiproxyPath(root)
	if o.build {
		for pkg, bin := range map[string]string{"./cmd/tcpchaos": o.tcpchaos, "./bench/reference": o.reference} {
			if err := build(ctx, root, pkg, bin); err != nil {
				return 0, err
			}
		}
	}
	for col := range numColumns {
		if col != toxiproxy || o.withToxiproxy {
			o.columns = append(o.columns, col)
		}
	}
	if o.live && o.withToxiproxy {
		if err := buildToxiproxy(ctx, o.toxiproxy); err != nil {
			return 0, err
		}
	}
	r := report{opts: o, machine: describeMachine(), date: time.Now().UTC()}
	err = r.measure(ctx, o)
	text, missed := r.finish(err)
	return missed, errors.Join(err, publish(text, o.out))
}

// finish renders the report (see render) of a suite that ended with err:
// when it failed part way, what was measured before is kept, and a last
// line says where it stopped.
func (r *report) finish(err error) (string, int) {
	text, missed := r.render()
	if err != nil {
		text += fmt.Sprintf("\nThe suite stopped early: %v\n", err)
	}
	return text, missed
}

// measure runs the workloads o asks for into r, in order; it stops at the
// first that fails, with an error that names it, and keeps only what
// completed.
func (r *report) measure(ctx context.Context, o options) error {
	phases := []struct {
		on       bool
		name     string // for the error
		progress string // for the line on standard error
		run      func() error
	}{
		{o.live, "live columns", fmt.Sprintf("live, rounds: %d, columns: %s", o.rounds, joinNames(o.columns)), func() (err error) {
			r.live, err = runLive(ctx, o)
			return err
		}},
		{o.live && o.twoQueues, "two queues", fmt.Sprintf("short connections from %d client addresses, 1 and 2 queues", o.sources), func() (err error) {
			r.spread, err = runSpread(ctx, o)
			return err
		}},
		{o.live && o.flood, "SYN flood", fmt.Sprintf("SYN flood, %d SYNs", o.floodSYNs), func() error {
			fr, err := runFlood(ctx, o)
			if err == nil {
				r.flood = &fr
			}
			return err
		}},
		{o.live, "blackhole", "a blackholed bulk transfer", func() error {
			d, err := runBlackhole(ctx, o)
			if err == nil {
				r.dark = &d
			}
			return err
		}},
		{o.offline, "offline Go benchmarks", "offline Go benchmarks (one core)", func() (err error) {
			r.benches, err = runGoBenches(ctx, o.root, o.rounds, o.benchtime)
			return err
		}},
		{o.offline, "replay", fmt.Sprintf("replay of %d synthetic packets", o.replayPackets), func() error {
			rp, err := runReplay(ctx, o)
			if err == nil {
				r.replay = rp
			}
			return err
		}},
		{o.oracle, "conntrack oracle", fmt.Sprintf("conntrack oracle, %d connections", o.oracleConns), func() error {
			or, err := runOracle(ctx, o)
			if err == nil {
				r.oracle = &or
			}
			return err
		}},
	}
	for _, p := range phases {
		if !p.on {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s\n", p.progress)
		if err := p.run(); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}

// publish prints the report text and writes it to out ("": nowhere else).
func publish(text, out string) error {
	fmt.Print(text)
	if out == "" {
		return nil
	}
	if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintf(os.Stderr, "bench: report written to %s\n", out)
	return nil
}

// build builds pkg into bin by way of a temporary file renamed into place,
// so that a program another run is executing is replaced, not overwritten.
func build(ctx context.Context, root, pkg, bin string) error {
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("install %s: %w", bin, err)
	}
	return nil
}

// runLive builds the lab and measures every column in every round, columns
// interleaved within a round. The namespaces go whatever happens.
func runLive(ctx context.Context, o options) (runs [][numColumns]liveRun, err error) {
	l, err := openLab(ctx, o, "live measurements", "-live=false", "tcpchaos-bench", "ip", "iptables", "iptables-save", "nstat")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, l.close()) }()
	for round := range o.rounds {
		var rr [numColumns]liveRun
		for _, col := range o.columns {
			if err := ctx.Err(); err != nil {
				return runs, err
			}
			start := time.Now()
			if rr[col], err = l.measure(ctx, col); err != nil {
				return runs, fmt.Errorf("round %d, %s: %w", round+1, col, err)
			}
			fmt.Fprintf(os.Stderr, "bench: round %d %-14s %s (%s)\n", round+1, col, rr[col].brief(), time.Since(start).Round(time.Millisecond))
		}
		runs = append(runs, rr)
	}
	return runs, nil
}

// workspace is what a live part of the suite works in: this program, to
// run again in the namespaces, a temporary directory and a lab.
type workspace struct {
	self, tmp string
	nl        *netlab.Lab
}

// newWorkspace checks that tools are there, finds this program and makes
// the temporary directory and the lab (namespaces "<prefix>-<pid>-*").
// what names the part in errors and skip is the flag that skips it; close
// removes it all.
func newWorkspace(what, skip, prefix string, tools ...string) (*workspace, error) {
	if err := netlab.Check(tools...); err != nil {
		return nil, fmt.Errorf("%s (use %s to skip them): %w", what, skip, err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program: %w", err)
	}
	tmp, err := os.MkdirTemp("", prefix+"-")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return &workspace{self: self, tmp: tmp, nl: netlab.New(fmt.Sprintf("%s-%d", prefix, os.Getpid()))}, nil
}

// close removes the lab and the temporary directory.
func (w *workspace) close() error {
	os.RemoveAll(w.tmp)
	return w.nl.Close()
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the tcpchaos module: run from the repository")
	}
	return filepath.Dir(mod), nil
}

// describeMachine returns "N CPUs (model), kernel K".
func describeMachine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	kernel := "unknown"
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	return fmt.Sprintf("%d CPUs (%s), Linux %s", runtime.NumCPU(), model, kernel)
}

// joinNames joins the names of xs with commas.
func joinNames[T fmt.Stringer](xs []T) string {
	names := make([]string, len(xs))
	for i, x := range xs {
		names[i] = x.String()
	}
	return strings.Join(names, ", ")
}
