package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/ctlclient"
	"github.com/tcpchaos/tcpchaos/internal/control"
)

// fakeRun answers the control socket like a run with one rule and one
// connection.
type fakeRun struct{ control.Backend }

func (fakeRun) Status() ctlclient.Status {
	return ctlclient.Status{PID: 42, Config: "/etc/tcpchaos.yaml", Rules: 1, Packets: map[string]uint64{"syn": 2, "data": 0},
		Queues: []ctlclient.Queue{{Number: 100, Received: 7, KernelQueued: 7}}, RulePackets: 10, QueueFullUnseen: 3}
}

// Conns answers one connection, with the filter's limit for its ID.
func (fakeRun) Conns(f ctlclient.ConnFilter) ([]ctlclient.Conn, error) {
	return []ctlclient.Conn{{ID: uint64(f.Limit), Client: "198.18.0.1:40000", Server: fmt.Sprintf("198.19.0.1:%d", f.Port), ClientState: f.State,
		ServerState: "ESTABLISHED", First: time.Now(), Last: time.Now(), Packets: map[string]uint64{"syn": 2}, Faults: 1}}, nil
}

func (fakeRun) SetRuleEnabled(name string, on bool) (ctlclient.Rule, error) {
	if name != "lose-first-syn" {
		return ctlclient.Rule{}, fmt.Errorf("no rule named %q in force: %w", name, control.ErrNotFound)
	}
	return ctlclient.Rule{Name: name, Enabled: on}, nil
}

func startFakeRun(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := control.Serve(ln, fakeRun{}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { srv.Close() })
	return path
}

func TestCtlOutputAndFlags(t *testing.T) {
	sock := startFakeRun(t)
	out, err := runCLI(t, "ctl", "--control", sock, "status")
	if err != nil || !strings.Contains(out, "pid 42") || !strings.Contains(out, "packets: syn 2\n") || !strings.Contains(out, "queue 100: 7 received") ||
		!strings.Contains(out, "interception: 10 packets reached the NFQUEUE rules, 3 passed the full queue unseen (fail-open, no id)\n") {
		t.Errorf("ctl status: %v\n%s", err, out)
	}
	// The flags may follow the command.
	out, err = runCLI(t, "ctl", "conns", "--json", "--control", sock, "--state", "established", "--port", "8080")
	var cs []ctlclient.Conn
	if err != nil || json.Unmarshal([]byte(out), &cs) != nil || len(cs) != 1 || cs[0].ClientState != "ESTABLISHED" || cs[0].Server != "198.19.0.1:8080" ||
		cs[0].ID != defaultConnsLimit {
		t.Errorf("ctl conns --json (limit %d by default): %v\n%s", defaultConnsLimit, err, out)
	}
	out, err = runCLI(t, "ctl", "conns", "--json", "--control", sock, "--limit", "0")
	if err != nil || json.Unmarshal([]byte(out), &cs) != nil || len(cs) != 1 || cs[0].ID != 0 {
		t.Errorf("ctl conns --json --limit 0: %v\n%s", err, out)
	}
	out, err = runCLI(t, "ctl", "--control", sock, "conns")
	if err != nil || !strings.Contains(out, "ID  ") || !strings.Contains(out, "198.18.0.1:40000") {
		t.Errorf("ctl conns: %v\n%s", err, out)
	}
	out, err = runCLI(t, "ctl", "--control", sock, "rules", "disable", "lose-first-syn")
	if err != nil || out != "rule lose-first-syn: enabled no (from the next packet on)\n" {
		t.Errorf("ctl rules disable: %v\n%q", err, out)
	}
}

func TestCtlExitCodes(t *testing.T) {
	sock := startFakeRun(t)
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"rules", "disable", "nope"}, exitFailure, `no rule named "nope"`},
		{[]string{"rules", "enable"}, exitUsage, "want one rule NAME"},
		{[]string{"rules", "bogus"}, exitUsage, "unknown command"},
		{[]string{"status", "extra"}, exitUsage, "unexpected arguments"},
		{[]string{"conns", "--port", "70000"}, exitUsage, "want a port number"},
		{[]string{"conns", "--limit", "-1"}, exitUsage, "--limit -1: want a number of connections"},
		{[]string{"conns", "--limit", "many"}, exitUsage, `invalid value "many" for flag -limit`},
		{[]string{"timeline"}, exitUsage, "want one CONN"},
		{[]string{"set"}, exitUsage, "want -f FILE"},
	} {
		out, err := runCLI(t, append([]string{"ctl", "--control", sock}, tc.args...)...)
		if err == nil || exitCode(err) != tc.code || !strings.Contains(err.Error()+out, tc.says) {
			t.Errorf("ctl %v: exit %d, %v; want %d saying %q", tc.args, exitCode(err), err, tc.code, tc.says)
		}
	}
	_, err := runCLI(t, "ctl", "--control", filepath.Join(t.TempDir(), "none.sock"), "status")
	if err == nil || exitCode(err) != exitFailure {
		t.Errorf("ctl status without a run: %v, want exit 1", err)
	}
}

// startHungRun listens on a control socket that accepts connections and
// reads their requests but never answers, like a hung run.
func startHungRun(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hung.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			go io.Copy(io.Discard, c) // read the request, answer nothing
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return path
}

// TestCtlTimeout: a run that accepts on its socket and never answers fails
// each ctl command (exit 1, saying so) within --timeout, and within the
// default without one.
func TestCtlTimeout(t *testing.T) {
	sock := startHungRun(t)
	for _, tc := range []struct {
		name  string
		args  []string
		bound time.Duration
	}{
		{"status", []string{"ctl", "--control", sock, "--timeout", "200ms", "status"}, 200 * time.Millisecond},
		{"conns, flag after", []string{"ctl", "conns", "--control", sock, "--timeout", "300ms"}, 300 * time.Millisecond},
		{"reload, default", []string{"ctl", "--control", sock, "reload"}, defaultCtlTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) { // not parallel: urfave/cli's help flag is shared by every app
			start := time.Now()
			out, err := runCLI(t, tc.args...)
			took := time.Since(start)
			if err == nil || exitCode(err) != exitFailure || !strings.Contains(err.Error(), "no answer within --timeout "+tc.bound.String()) {
				t.Errorf("ctl %v: exit %d, %v\n%s; want exit %d saying no answer within --timeout %s", tc.args, exitCode(err), err, out, exitFailure, tc.bound)
			}
			if took < tc.bound || took > tc.bound+5*time.Second {
				t.Errorf("ctl %v returned after %s, want %s (give or take 5s)", tc.args, took, tc.bound)
			}
		})
	}
}

// TestCtlTimeoutDuringSocketSearch: a --timeout that runs out while ctl
// looks for a run's socket (no --control) says so, not that no run is
// there.
func TestCtlTimeoutDuringSocketSearch(t *testing.T) {
	out, err := runCLI(t, "ctl", "--timeout", "1ns", "status")
	if err == nil || exitCode(err) != exitFailure || !strings.Contains(err.Error(), "no answer within --timeout 1ns") {
		t.Errorf("ctl --timeout 1ns status: exit %d, %v\n%s; want exit %d saying no answer within --timeout 1ns", exitCode(err), err, out, exitFailure)
	}
}

// TestCtlTimeoutUsage: a --timeout that does not parse or is not above
// zero, before or after the command, is a usage error naming the flag.
func TestCtlTimeoutUsage(t *testing.T) {
	sock := startFakeRun(t)
	for _, args := range [][]string{
		{"--timeout", "0", "status"},
		{"--timeout", "-1s", "status"},
		{"--timeout", "soon", "status"},
		{"status", "--timeout", "0s"},
		{"rules", "disable", "--timeout", "5", "lose-first-syn"},
	} {
		out, err := runCLI(t, append([]string{"ctl", "--control", sock}, args...)...)
		if err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), "timeout") {
			t.Errorf("ctl %v: exit %d, %v\n%s; want exit %d naming --timeout", args, exitCode(err), err, out, exitUsage)
		}
	}
	if out, err := runCLI(t, "ctl", "--control", sock, "--timeout", "2s", "status"); err != nil || !strings.Contains(out, "pid 42") {
		t.Errorf("ctl --timeout 2s status: %v\n%s", err, out)
	}
}

// TestStatusQueueFullUnknown: a status whose queue-full count could not
// be read says why instead of a count.
func TestStatusQueueFullUnknown(t *testing.T) {
	var b strings.Builder
	writeStatus(&b, ctlclient.Status{QueueFullError: "queue-full count: iptables: exit status 1"})
	if want := "interception: packets past a full queue unknown: queue-full count: iptables: exit status 1\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("status ends %q, want %q", b.String(), want)
	}
}

// TestWriteStatusQuietPhases: the status says which parts of a
// connection bypass the queue.
func TestWriteStatusQuietPhases(t *testing.T) {
	for _, c := range []struct {
		s    ctlclient.Status
		want string
	}{
		{ctlclient.Status{}, "rules: 0 in force; data phase queued\n"},
		{ctlclient.Status{Quiet: true}, "rules: 0 in force; data phase bypasses the queue (quiet connections)\n"},
		{ctlclient.Status{Quiet: true, QuietHandshake: true}, "data phase bypasses the queue (quiet connections), and so does the third ACK (quiet handshake)\n"},
		{ctlclient.Status{Quiet: true, QuietClose: true}, "(quiet connections), and so does what passes between the first FIN and the second (quiet close)\n"},
		{ctlclient.Status{Quiet: true, QuietHandshake: true, QuietClose: true}, "and so do the third ACK (quiet handshake) and what passes between the first FIN and the second (quiet close)\n"},
	} {
		var b strings.Builder
		writeStatus(&b, c.s)
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("status %+v:\n%s\nlacks %q", c.s, b.String(), c.want)
		}
	}
}
