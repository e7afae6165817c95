package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/ctlclient"
	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// tcpchaosBin is the tcpchaos executable TestMain builds.
var tcpchaosBin string

// TestMain builds cmd/tcpchaos once for every test of the package.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tcpchaos-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: create build directory: %v\n", err)
		os.Exit(1)
	}
	tcpchaosBin = filepath.Join(dir, "tcpchaos")
	if out, err := exec.Command("go", "build", "-o", tcpchaosBin, "github.com/tcpchaos/tcpchaos/cmd/tcpchaos").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build tcpchaos: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	removeStaleSockets()
	os.Exit(code)
}

// removeStaleSockets removes the control sockets that runs killed by the
// tests (SIGKILL, or a failed test's cleanup) left in ctlclient.DefaultDir.
// Their namespaces, and so their sockets' names, carry this process's PID,
// and every run the tests started has ended by now.
func removeStaleSockets() {
	stale, _ := filepath.Glob(filepath.Join(ctlclient.DefaultDir, fmt.Sprintf("tcx-*-%d-*.sock", os.Getpid())))
	for _, path := range stale {
		os.Remove(path)
	}
}

// configPath is the path of a file under configs/.
func configPath(name string) string { return filepath.Join("..", "configs", name) }

// Timeouts; generous, for a loaded 2-core machine.
const (
	readyTimeout = 15 * time.Second // tcpchaos installs its rules
	stopTimeout  = 15 * time.Second // tcpchaos exits after a signal
	ioTimeout    = 10 * time.Second // one exchange, one wait for packets
)

// queueCounter hands every tcpchaos run its own NFQUEUE number. Queues
// are per network namespace, so this is not needed for correctness; it
// keeps the numbers in logs and events apart.
var queueCounter atomic.Uint32

func nextQueue() string { return fmt.Sprint(1000 + queueCounter.Add(1)) }

// lockedBuffer is a bytes.Buffer written by one goroutine and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tcpchaos is one running `tcpchaos run`.
type tcpchaos struct {
	t      *testing.T
	ns     *netlabtest.NS // where it intercepts
	cmd    *exec.Cmd
	events string // the --events file
	stdout lockedBuffer
	stderr lockedBuffer
	// wantExit is the exit code stop expects (0, or 3 when a test makes
	// an expectation fail).
	wantExit int
	exited   chan struct{} // closed once cmd.Wait returned
	err      error         // cmd.Wait's error, set before exited closes
}

// startTcpchaos runs `tcpchaos run -c config --netns ns --events FILE
// --queue N [extra...]` and returns once it reports that it intercepts.
// The process is killed by t.Cleanup if the test did not stop it.
func startTcpchaos(t *testing.T, ns *netlabtest.NS, config string, extra ...string) *tcpchaos {
	t.Helper()
	tc := &tcpchaos{t: t, ns: ns, events: filepath.Join(t.TempDir(), "events.jsonl"), exited: make(chan struct{})}
	args := append([]string{"run", "-c", config, "--netns", ns.Path, "--events", tc.events, "--queue", nextQueue()}, extra...)
	tc.cmd = exec.Command(tcpchaosBin, args...)
	tc.cmd.Stdout = &tc.stdout
	stderr, err := tc.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("tcpchaos stderr pipe: %v", err)
	}
	if err := tc.cmd.Start(); err != nil {
		t.Fatalf("start tcpchaos: %v", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			tc.stderr.Write([]byte(sc.Text() + "\n"))
			if !signalled && strings.HasPrefix(sc.Text(), "tcpchaos: intercepting") {
				signalled = true
				close(ready)
			}
		}
		tc.err = tc.cmd.Wait()
		close(tc.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-tc.exited:
		default:
			_ = tc.cmd.Process.Kill()
			<-tc.exited
		}
	})
	select {
	case <-ready:
	case <-tc.exited:
		t.Fatalf("tcpchaos %s exited before intercepting: %v\nstderr:\n%s", strings.Join(args, " "), tc.err, tc.stderr.String())
	case <-time.After(readyTimeout):
		t.Fatalf("tcpchaos %s not intercepting after %v\nstderr:\n%s", strings.Join(args, " "), readyTimeout, tc.stderr.String())
	}
	return tc
}

// runTcpchaos runs tcpchaos with args to completion and returns its exit
// code and output.
func runTcpchaos(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), stopTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tcpchaosBin, args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		code = ee.ExitCode()
	default:
		t.Fatalf("tcpchaos %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return code, out.String(), errOut.String()
}

// signal sends sig to the tcpchaos process (by its PID) and waits for it
// to exit, returning its exit code (-1 when killed by a signal).
func (tc *tcpchaos) signal(sig syscall.Signal) int {
	tc.t.Helper()
	if err := tc.cmd.Process.Signal(sig); err != nil {
		tc.t.Fatalf("send %v to tcpchaos: %v", sig, err)
	}
	return tc.wait()
}

// wait waits for tcpchaos to exit by itself and returns its exit code.
func (tc *tcpchaos) wait() int {
	tc.t.Helper()
	select {
	case <-tc.exited:
	case <-time.After(stopTimeout):
		_ = tc.cmd.Process.Kill()
		<-tc.exited
		tc.t.Fatalf("tcpchaos still running after %v\nstderr:\n%s", stopTimeout, tc.stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case tc.err == nil:
		return 0
	case errors.As(tc.err, &ee):
		return ee.ExitCode()
	default:
		tc.t.Fatalf("wait for tcpchaos: %v", tc.err)
		return -1
	}
}

// stop interrupts tcpchaos (SIGINT) and checks a clean exit: exit code
// wantExit, a summary on standard output and no tcpchaos chain left in
// the namespace, IPv4 or IPv6. It returns the events, checked against the
// stable format of README.md's "Events" section.
func (tc *tcpchaos) stop() []events.Event {
	tc.t.Helper()
	if code := tc.signal(syscall.SIGINT); code != tc.wantExit {
		tc.t.Errorf("tcpchaos exit code after SIGINT = %d, want %d\nstderr:\n%s", code, tc.wantExit, tc.stderr.String())
	}
	out := tc.stdout.String()
	for _, want := range []string{"tcpchaos: ran ", "connections: ", "actions:", "queue: "} {
		if !strings.Contains(out, want) {
			tc.t.Errorf("tcpchaos summary lacks %q:\n%s", want, out)
		}
	}
	if left := chainsIn(tc.t, tc.ns); left != "" {
		tc.t.Errorf("tcpchaos rules left in %s after SIGINT:\n%s", tc.ns.Name, left)
	}
	evs := readEvents(tc.t, tc.events)
	// Every event the pipelines emitted is in the file: the writer was
	// drained at stop, and these loads never fill its buffer.
	var written, dropped int
	if i := strings.Index(out, "events: "); i < 0 {
		tc.t.Errorf("tcpchaos summary lacks the events line:\n%s", out)
	} else if _, err := fmt.Sscanf(out[i:], "events: %d written, %d dropped", &written, &dropped); err != nil || written != len(evs) || dropped != 0 {
		tc.t.Errorf("summary: events %d written, %d dropped (%v); the file has %d: want all written, none dropped", written, dropped, err, len(evs))
	}
	return evs
}

// chainsIn returns the lines of iptables-save and ip6tables-save in ns
// that mention tcpchaos's chains ("" when none is installed).
func chainsIn(t *testing.T, ns *netlabtest.NS) string {
	t.Helper()
	var b strings.Builder
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		for line := range strings.Lines(ns.Run(t, cmd)) {
			if strings.Contains(line, "TCPCHAOS") {
				b.WriteString(cmd + ": " + line)
			}
		}
	}
	return b.String()
}

// readEvents parses the events file and checks every line against the
// stable format of README.md "Events": the mandatory keys are present,
// time is RFC 3339 with nanoseconds, states are spelled as in the States
// section, packet events name their sender, kind and nth, and faults name
// their rule and a known action.
func readEvents(t *testing.T, file string) []events.Event {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	var evs []events.Event
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(line, &raw); err != nil {
			t.Fatalf("events line %d is not a JSON object: %v: %s", i+1, err, line)
		}
		for _, k := range []string{"time", "conn", "kind", "seq", "ack", "client_state", "server_state"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("events line %d lacks %q: %s", i+1, k, line)
			}
		}
		var ts string
		if err := json.Unmarshal(raw["time"], &ts); err != nil {
			t.Errorf("events line %d: time is not a string: %s", i+1, line)
		} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("events line %d: time %q is not RFC 3339: %v", i+1, ts, err)
		}
		var w wireEvent
		if err := json.Unmarshal(line, &w); err != nil {
			t.Fatalf("events line %d: %v: %s", i+1, err, line)
		}
		checkEvent(t, i+1, w, string(line))
		var e events.Event
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("events line %d: %v: %s", i+1, err, line)
		}
		evs = append(evs, e)
	}
	return evs
}

// wireEvent is an event line as written, every value as spelled, for
// checkEvent: the spellings are checked here independently of
// events.Event's decoding.
type wireEvent struct {
	Conn, From, Kind, Flags, Rule, Action, Delay, After, Reason, Blackhole string
	ClientState                                                            string `json:"client_state"`
	ServerState                                                            string `json:"server_state"`
	Nth, Copies                                                            uint32
}

func checkEvent(t *testing.T, n int, e wireEvent, line string) {
	t.Helper()
	client, server, ok := strings.Cut(e.Conn, "->")
	if _, err := netip.ParseAddrPort(client); !ok || err != nil {
		t.Errorf("events line %d: conn %q is not client->server: %s", n, e.Conn, line)
	} else if _, err := netip.ParseAddrPort(server); err != nil {
		t.Errorf("events line %d: conn %q is not client->server: %s", n, e.Conn, line)
	}
	for _, s := range []string{e.ClientState, e.ServerState} {
		if st, err := statetrack.ParseState(s); err != nil || st.String() != s {
			t.Errorf("events line %d: state %q is not spelled as in README.md's States (%v): %s", n, s, err, line)
		}
	}
	switch e.Blackhole {
	case "", "both", "to-client", "to-server":
	default:
		t.Errorf("events line %d: blackhole %q, want both, to-client or to-server: %s", n, e.Blackhole, line)
	}
	if e.Kind == "state" {
		if e.Reason == "" {
			t.Errorf("events line %d: state event without reason: %s", n, line)
		}
		return
	}
	if _, err := statetrack.ParseKind(e.Kind); err != nil {
		t.Errorf("events line %d: %v: %s", n, err, line)
	}
	if e.From != "client" && e.From != "server" {
		t.Errorf("events line %d: from %q, want client or server: %s", n, e.From, line)
	}
	if e.Nth == 0 || e.Flags == "" {
		t.Errorf("events line %d: packet event without nth or flags: %s", n, line)
	}
	if (e.Rule == "") != (e.Action == "") {
		t.Errorf("events line %d: rule %q with action %q: %s", n, e.Rule, e.Action, line)
	}
	switch e.Action {
	case "", "drop", "reset", "blackhole", "accept":
	case "delay":
		if _, err := time.ParseDuration(e.Delay); err != nil {
			t.Errorf("events line %d: delay %q: %v: %s", n, e.Delay, err, line)
		}
	case "duplicate":
		if _, err := time.ParseDuration(e.After); err != nil || e.Copies == 0 {
			t.Errorf("events line %d: duplicate %d copies after %q: %s", n, e.Copies, e.After, line)
		}
	default:
		t.Errorf("events line %d: unknown action %q: %s", n, e.Action, line)
	}
}

// dumpEvents renders events one per line, for failure messages.
func dumpEvents(evs []events.Event) string {
	var b strings.Builder
	for _, e := range evs {
		kind, action := "state", ""
		if !e.IsState() {
			kind = e.Kind.String()
		}
		if e.Rule != "" {
			action = e.Action.String()
		}
		fmt.Fprintf(&b, "%s %s %s %s/%s nth=%d seq=%d ack=%d [%s] client=%s server=%s rule=%s action=%s reason=%s\n",
			e.Time.Format("15:04:05.000000"), e.Conn(), e.From, kind, e.Closer, e.Nth, e.Seq, e.Ack, e.Flags,
			e.ClientState, e.ServerState, e.Rule, action, e.Reason)
	}
	return b.String()
}
