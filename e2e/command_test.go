package e2e

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/expect"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
)

// body is what the HTTP server of these tests answers.
const body = "hello from the server namespace\n"

// commandRun is a topology with an HTTP server on port 8080 in the server
// namespace, for `tcpchaos run -- CMD` in the router.
type commandRun struct {
	t          *testing.T
	tp         *netlabtest.Topology
	url        string
	dir        string // report, JUnit and events files
	report     string
	junit      string
	baseArgs   []string
	configPath string
}

func newCommandRun(t *testing.T, config string) *commandRun {
	t.Helper()
	tp := netlabtest.NewTopology(t)
	ln := tp.Server.Listen(t, "tcp", fmt.Sprintf("%s:%d", tp.Server4, port))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) }),
		ReadHeaderTimeout: ioTimeout}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	dir := t.TempDir()
	r := &commandRun{t: t, tp: tp, url: fmt.Sprintf("http://%s:%d/", tp.Server4, port), dir: dir,
		report: filepath.Join(dir, "report.json"), junit: filepath.Join(dir, "junit.xml"), configPath: config}
	r.baseArgs = []string{"run", "-c", config, "--netns", tp.Router.Path, "--queue", nextQueue(),
		"--events", filepath.Join(dir, "events.jsonl"), "--report", r.report, "--junit", r.junit}
	return r
}

// curl returns the command line of curl in the client namespace with a
// connect timeout.
func (r *commandRun) curl(connectTimeout string) []string {
	return []string{"ip", "netns", "exec", r.tp.Client.Name, "curl", "-sS", "--connect-timeout", connectTimeout, "--max-time", "10", r.url}
}

// run runs tcpchaos with extra flags and -- cmd to completion, checks that
// nothing of it is left in the router, and returns its exit code and
// output.
func (r *commandRun) run(extra []string, cmd ...string) (code int, stdout, stderr string) {
	r.t.Helper()
	args := append(append(append([]string{}, r.baseArgs...), extra...), "--")
	code, stdout, stderr = runTcpchaos(r.t, append(args, cmd...)...)
	r.t.Logf("tcpchaos %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	if left := chainsIn(r.t, r.tp.Router); left != "" {
		r.t.Errorf("tcpchaos rules left in the router:\n%s", left)
	}
	return code, stdout, stderr
}

// readReport parses the --report file.
func (r *commandRun) readReport() expect.Report { return readReport(r.t, r.report) }

// readReport parses a --report file.
func readReport(t *testing.T, path string) expect.Report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read report: %v", err)
	}
	var rep expect.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("report %s: %v\n%s", path, err, data)
	}
	return rep
}

// junitReport is the part of a JUnit XML report these tests read.
type junitReport struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Suites   []struct {
		Cases []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
			} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// readJUnit parses the --junit file and returns, by test case name,
// whether it failed.
func (r *commandRun) readJUnit() (failed map[string]bool, j junitReport) {
	r.t.Helper()
	data, err := os.ReadFile(r.junit)
	if err != nil {
		r.t.Fatalf("read JUnit report: %v", err)
	}
	if err := xml.Unmarshal(data, &j); err != nil {
		r.t.Fatalf("JUnit report: %v\n%s", err, data)
	}
	failed = map[string]bool{}
	for _, s := range j.Suites {
		for _, c := range s.Cases {
			failed[c.Name] = c.Failure != nil
		}
	}
	return failed, j
}

// wantOutcomes checks the report's expectations: their names in order and
// whether each holds; it returns them by name.
func wantOutcomes(t *testing.T, rep expect.Report, want map[string]bool, order ...string) map[string]expect.ExpectationReport {
	t.Helper()
	got := map[string]expect.ExpectationReport{}
	var names []string
	for _, e := range rep.Expectations {
		got[e.Name] = e
		names = append(names, e.Name)
	}
	if strings.Join(names, " ") != strings.Join(order, " ") {
		t.Fatalf("report lists expectations %v, want %v", names, order)
	}
	for name, holds := range want {
		if got[name].Holds != holds {
			t.Errorf("%s: holds %t, want %t: %+v", name, got[name].Holds, holds, got[name])
		}
	}
	return got
}

// TestCommandHolds: curl with a 3 s connect timeout under a lost first
// SYN connects about 1 s late, gets the page (passed through to stdout),
// and every expectation holds, the implicit exit status too: exit 0, and
// both reports say so.
func TestCommandHolds(t *testing.T) {
	t.Parallel()
	r := newCommandRun(t, filepath.Join("testdata", "command-lost-first-syn.yaml"))
	code, stdout, _ := r.run(nil, r.curl("3")...)
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if !strings.HasPrefix(stdout, body) {
		t.Errorf("stdout does not start with the command's output %q:\n%s", body, stdout)
	}
	rep := r.readReport()
	all := map[string]bool{"syn-retransmitted": true, "connect-within-1.8s": true, "client-closes": true, "fired-once": true, expect.DefaultExit: true}
	got := wantOutcomes(t, rep, all, "syn-retransmitted", "connect-within-1.8s", "client-closes", "fired-once", expect.DefaultExit)
	if !rep.Passed || rep.Run.ExitStatus == nil || *rep.Run.ExitStatus != 0 {
		t.Errorf("report: passed %t, exit status %v, want passed and 0", rep.Passed, rep.Run.ExitStatus)
	}
	if g := got["syn-retransmitted"].Measured.GapMaxSeconds; g == nil || *g < 0.9 || *g > 2.5 {
		t.Errorf("SYN retransmission gap %v s, want about 1 s", g)
	}
	failed, j := r.readJUnit()
	if j.Tests != 5 || j.Failures != 0 || len(failed) != 5 {
		t.Errorf("JUnit: %d tests, %d failures, cases %v; want 5, 0", j.Tests, j.Failures, failed)
	}
}

// TestCommandFails: the same config with curl giving up after 500 ms
// (exit 28): no SYN retransmission follows the drop, the client stays in
// SYN_SENT until the run ends and never reaches TIME_WAIT, and the
// command's exit status is not 0; only the hit count holds. Exit 3.
func TestCommandFails(t *testing.T) {
	t.Parallel()
	r := newCommandRun(t, filepath.Join("testdata", "command-lost-first-syn.yaml"))
	code, _, stderr := r.run([]string{"--linger", "1500ms"}, r.curl("0.5")...)
	if code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	if !strings.Contains(stderr, "curl: (28)") {
		t.Errorf("curl's stderr not passed through:\n%s", stderr)
	}
	rep := r.readReport()
	want := map[string]bool{"syn-retransmitted": false, "connect-within-1.8s": false, "client-closes": false, "fired-once": true, expect.DefaultExit: false}
	got := wantOutcomes(t, rep, want, "syn-retransmitted", "connect-within-1.8s", "client-closes", "fired-once", expect.DefaultExit)
	if rep.Passed || rep.Run.ExitStatus == nil || *rep.Run.ExitStatus != 28 {
		t.Errorf("report: passed %t, exit status %v, want failed and 28", rep.Passed, rep.Run.ExitStatus)
	}
	client := r.tp.Client4.String() + ":"
	for _, name := range []string{"syn-retransmitted", "connect-within-1.8s", "client-closes"} {
		if ce := got[name].CounterExamples; len(ce) != 1 || !strings.HasPrefix(ce[0].Conn, client) {
			t.Errorf("%s: counter-examples %+v, want the client's connection", name, ce)
		}
	}
	// The client sat in SYN_SENT from its first SYN to the end of the run:
	// 500 ms of curl and the 1.5 s linger.
	if l := got["connect-within-1.8s"].Measured.LongestSeconds; l == nil || *l < 1.9 || *l > 6 {
		t.Errorf("longest SYN_SENT %v s, want about 2 s", l)
	}
	failed, j := r.readJUnit()
	if j.Tests != 5 || j.Failures != 4 || failed["fired-once"] || !failed[expect.DefaultExit] || !failed["client-closes"] {
		t.Errorf("JUnit: %d tests, %d failures, cases failed %v; want 5 tests, 4 failures, fired-once passed", j.Tests, j.Failures, failed)
	}
}

// TestCommandExitAndHits: an exit item expecting curl's timeout (28) holds
// when curl times out, and a hits item whose minimum the single firing
// does not reach fails; the other way round, the exit item fails when
// curl connects. Exit 3 both times.
func TestCommandExitAndHits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		timeout string
		status  int
		exitOK  bool
	}{{"0.5", 28, true}, {"3", 0, false}} {
		t.Run("connect-timeout-"+tc.timeout, func(t *testing.T) {
			t.Parallel()
			r := newCommandRun(t, filepath.Join("testdata", "command-times-out.yaml"))
			code, _, _ := r.run([]string{"--linger", "0"}, r.curl(tc.timeout)...)
			if code != 3 {
				t.Errorf("exit code %d, want 3", code)
			}
			rep := r.readReport()
			got := wantOutcomes(t, rep, map[string]bool{"client-times-out": tc.exitOK, "fired-twice": false}, "client-times-out", "fired-twice")
			if s := got["client-times-out"].Measured.ExitStatus; s == nil || *s != tc.status {
				t.Errorf("measured exit status %v, want %d", s, tc.status)
			}
			if h := got["fired-twice"].Measured.Hits; h == nil || *h != 1 {
				t.Errorf("measured hits %v, want 1", h)
			}
		})
	}
}

// TestCommandBadLinger: a negative --linger is a usage error (exit 2),
// before anything is installed or started.
func TestCommandBadLinger(t *testing.T) {
	t.Parallel()
	r := newCommandRun(t, configPath("lost-first-syn.yaml"))
	marker := filepath.Join(r.dir, "started")
	code, _, stderr := r.run([]string{"--linger", "-1s"}, "touch", marker)
	if code != 2 || !strings.Contains(stderr, "--linger") {
		t.Errorf("exit code %d, want 2 naming --linger:\n%s", code, stderr)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the command ran: %v", err)
	}
}

// TestCommandCannotStart: a command that cannot be started fails the run
// (exit 1) with an error naming it, after a clean teardown.
func TestCommandCannotStart(t *testing.T) {
	t.Parallel()
	r := newCommandRun(t, configPath("lost-first-syn.yaml"))
	missing := filepath.Join(r.dir, "no-such-command")
	code, _, stderr := r.run(nil, missing, "arg")
	if code != 1 || !strings.Contains(stderr, "start command \""+missing+" arg\"") {
		t.Errorf("exit code %d, want 1 with the command named:\n%s", code, stderr)
	}
}

// TestCommandStopped: SIGINT to tcpchaos, or --duration, stops a command
// that would run for minutes: SIGTERM reaches its whole process group
// (the shell and the sleep it started), tcpchaos tears down and exits 3
// because the command's status, 143 (128+SIGTERM), is not 0.
func TestCommandStopped(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"sigint", "duration"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			r := newCommandRun(t, configPath("lost-first-syn.yaml"))
			pidFile := filepath.Join(r.dir, "sleep.pid")
			script := fmt.Sprintf("sleep 300 & echo $! > %s; wait", pidFile)
			extra := []string{"--report", r.report}
			if how == "duration" {
				extra = append(extra, "--duration", "1s")
			}
			tc := startTcpchaos(t, r.tp.Router, configPath("lost-first-syn.yaml"), append(extra, "--", "sh", "-c", script)...)
			sleepPid := waitPidFile(t, pidFile)
			start := time.Now()
			var code int
			if how == "sigint" {
				code = tc.signal(syscall.SIGINT)
			} else {
				code = tc.wait()
			}
			if took := time.Since(start); took > 4*time.Second {
				t.Errorf("tcpchaos took %v to stop the command, want well under the 5 s grace", took)
			}
			if code != 3 {
				t.Errorf("exit code %d, want 3\nstderr:\n%s", code, tc.stderr.String())
			}
			if !gone(sleepPid, 2*time.Second) {
				t.Errorf("the command's child %d still runs", sleepPid)
				_ = syscall.Kill(sleepPid, syscall.SIGKILL)
			}
			if left := chainsIn(t, r.tp.Router); left != "" {
				t.Errorf("tcpchaos rules left in the router:\n%s", left)
			}
			rep := r.readReport()
			if rep.Run.ExitStatus == nil || *rep.Run.ExitStatus != 128+int(syscall.SIGTERM) {
				t.Errorf("report exit status %v, want 143", rep.Run.ExitStatus)
			}
		})
	}
}

// gone waits until the process pid has exited (gone, or a zombie waiting
// for its new parent to reap it) and reports whether it did within
// timeout.
func gone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// The state follows the command name in parentheses.
		if _, rest, ok := strings.Cut(string(stat), ") "); err != nil || ok && strings.HasPrefix(rest, "Z") {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitPidFile waits for a shell to write a process id to path.
func waitPidFile(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(data), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil {
				t.Fatalf("pid file: %v", err)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no pid in %s after %v", path, ioTimeout)
	return 0
}
