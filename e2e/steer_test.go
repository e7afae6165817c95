package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/ctlclient"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// The rule sets the steering tests switch between, and what each does to
// connect() on this kernel: a lost first SYN costs the 1 s SYN
// retransmission timer.
const (
	loseFirstSyn = `rules:
  - name: lose-first-syn
    match: {packet: syn, nth: 1}
    action: drop
`
	noRules = "rules: []\n"
	// slowConnect and fastConnect bound connect() with and without a lost
	// SYN, generously for a loaded machine.
	slowConnect = 800 * time.Millisecond
	fastConnect = 600 * time.Millisecond
)

// steered is a topology with tcpchaos on the router, a server answering
// pingPong on port (and on altPort), and the run's control socket.
type steered struct {
	t      *testing.T
	tp     *netlabtest.Topology
	chaos  *tcpchaos
	config string // the config file (possibly a symlink)
	sock   string // the control socket
	ctl    *ctlclient.Client
}

// altPort is a second server port, intercepted only when a config says so.
const altPort = 9090

// config is a forward-mode config intercepting ports with rulesYAML.
func config(ports []int, rulesYAML string) string {
	return fmt.Sprintf("intercept:\n  mode: forward\n  ports: %s\n", strings.Join(strings.Fields(fmt.Sprint(ports)), ", ")) + rulesYAML
}

// writeFile writes content to path, failing the test on error.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newSteered starts tcpchaos with the config file at path (written by the
// caller), its control socket in a directory of its own.
func newSteered(t *testing.T, path string, extra ...string) *steered {
	t.Helper()
	tp := netlabtest.NewTopology(t)
	s := &steered{t: t, tp: tp, config: path, sock: filepath.Join(t.TempDir(), "ctl.sock")}
	for _, p := range []int{port, altPort} {
		serve(t, tp.Server.Listen(t, "tcp", netip.AddrPortFrom(tp.Server4, uint16(p)).String()), pingPong(0))
	}
	s.chaos = startTcpchaos(t, tp.Router, path, append([]string{"--control", s.sock}, extra...)...)
	s.ctl = ctlclient.New(s.sock)
	t.Cleanup(s.ctl.Close)
	return s
}

// connect dials the server's port p from the client, exchanges one
// request, and returns the connection (open) and how long connect() took.
func (s *steered) connect(p int) (net.Conn, time.Duration) {
	s.t.Helper()
	addr := netip.AddrPortFrom(s.tp.Server4, uint16(p)).String()
	start := time.Now()
	c, err := s.tp.Client.Dial("tcp", addr, ioTimeout)
	took := time.Since(start)
	if err != nil {
		s.t.Fatalf("dial %s after %v: %v", addr, took, err)
	}
	s.t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		s.t.Fatal(err)
	}
	request(s.t, c)
	return c, took
}

// wantConnect connects to port p and checks whether connect() was slowed
// by a lost SYN.
func (s *steered) wantConnect(p int, slow bool, when string) net.Conn {
	s.t.Helper()
	c, took := s.connect(p)
	switch {
	case slow && took < slowConnect:
		s.t.Errorf("%s: connect to port %d took %v, want >= %v (the first SYN lost)", when, p, took, slowConnect)
	case !slow && took >= fastConnect:
		s.t.Errorf("%s: connect to port %d took %v, want < %v (no SYN lost)", when, p, took, fastConnect)
	}
	return c
}

// ctlRun runs `tcpchaos ctl --control SOCK args...`.
func (s *steered) ctlRun(args ...string) (code int, stdout, stderr string) {
	s.t.Helper()
	return runTcpchaos(s.t, append([]string{"ctl", "--control", s.sock}, args...)...)
}

// wantCtl runs ctl and checks that it succeeds; it returns its output.
func (s *steered) wantCtl(args ...string) string {
	s.t.Helper()
	code, out, errOut := s.ctlRun(args...)
	if code != 0 {
		s.t.Fatalf("tcpchaos ctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// waitReloads polls the status through the Go client until n reloads
// succeeded, and checks that a reload line says why. (When the machine is
// slow the file watch may see an edit before the SIGHUP or the ctl reload
// that follows it is handled: that one then finds nothing changed.)
func (s *steered) waitReloads(n uint64, why string) ctlclient.Status {
	s.t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		st, err := s.ctl.Status(context.Background())
		if err != nil {
			s.t.Fatalf("status: %v", err)
		}
		said := strings.Contains(s.chaos.stderr.String(), "("+why+"): ")
		if st.Reloads >= n && said {
			return st
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%d reloads after %v, want %d, one saying %q; stderr:\n%s", st.Reloads, ioTimeout, n, why, s.chaos.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReloadMidRun switches the rules of a running instance, each of the
// four ways, and sees both rule sets act on the wire: connect() is fast
// without rules and costs a SYN retransmission with lose-first-syn.
func TestReloadMidRun(t *testing.T) {
	edit := func(s *steered, content string) { writeFile(s.t, s.config, content) }
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, content string) string // writes the first config, returns its path
		swap  func(s *steered, content string)          // puts in the second
		why   string
	}{
		{"file-edit", plainConfig, edit, "the config file changed"},
		{"configmap-symlink-swap", configMapConfig, swapConfigMap, "the config file changed"},
		{"sighup", plainConfig, func(s *steered, content string) {
			edit(s, content)
			if err := s.chaos.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				s.t.Fatal(err)
			}
		}, "SIGHUP"},
		{"ctl-reload", plainConfig, func(s *steered, content string) {
			edit(s, content)
			if out := s.wantCtl("reload"); !strings.HasPrefix(out, "reloaded "+s.config+": ") {
				s.t.Errorf("ctl reload: %q, want it to say it reloaded %s", out, s.config)
			}
		}, "a control request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSteered(t, tc.setup(t, config([]int{port}, noRules)))
			kept := s.wantConnect(port, false, "before the reload")
			tc.swap(s, config([]int{port}, loseFirstSyn))
			st := s.waitReloads(1, tc.why)
			if st.Rules != 1 || st.Tracked < 1 {
				t.Errorf("status after the reload: %d rules, %d tracked; want 1 rule and the connection from before", st.Rules, st.Tracked)
			}
			s.wantConnect(port, true, "after the reload")
			request(t, kept) // the connection from before still works
			s.chaos.stop()
		})
	}
}

// plainConfig writes content to a config file of its own.
func plainConfig(t *testing.T, content string) string {
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, content)
	return path
}

// configMapConfig lays out content as a Kubernetes ConfigMap volume does:
// config.yaml -> ..data/config.yaml, ..data -> ..2026_01_01_00_00_00.1.
func configMapConfig(t *testing.T, content string) string {
	dir := t.TempDir()
	data := "..2026_01_01_00_00_00.1"
	if err := os.Mkdir(filepath.Join(dir, data), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, data, "config.yaml"), content)
	for _, l := range [][2]string{{data, "..data"}, {"..data/config.yaml", "config.yaml"}} {
		if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "config.yaml")
}

// swapConfigMap updates a ConfigMap volume as the kubelet does: a new data
// directory, a new ..data symlink renamed over the old one (atomic), the
// old directory removed.
func swapConfigMap(s *steered, content string) {
	dir := filepath.Dir(s.config)
	old, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		s.t.Fatal(err)
	}
	data := "..2026_01_01_00_00_00.2"
	if err := os.Mkdir(filepath.Join(dir, data), 0o755); err != nil {
		s.t.Fatal(err)
	}
	writeFile(s.t, filepath.Join(dir, data, "config.yaml"), content)
	if err := os.Symlink(data, filepath.Join(dir, "..data_tmp")); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		s.t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
		s.t.Fatal(err)
	}
}

// TestBadReloadRefused: a config that does not decode, and one that
// changes what needs a restart, are refused with their reasons; the old
// rule still loses the first SYN.
func TestBadReloadRefused(t *testing.T) {
	t.Parallel()
	s := newSteered(t, plainConfig(t, config([]int{port}, loseFirstSyn)), "--metrics", "127.0.0.1:0")
	s.wantConnect(port, true, "at start")
	writeFile(t, s.config, config([]int{port}, "rules:\n  - name: x\n    match: {packet: sin}\n    action: drop\n"))
	code, _, errOut := s.ctlRun("reload")
	if code != 1 || !strings.Contains(errOut, "rules[0].match.packet") {
		t.Errorf("ctl reload of a bad config: exit %d, %q; want 1 and the key path rules[0].match.packet", code, errOut)
	}
	local := filepath.Join(t.TempDir(), "local.yaml")
	writeFile(t, local, strings.Replace(config([]int{port}, noRules), "forward", "local", 1))
	code, _, errOut = s.ctlRun("set", "-f", local)
	if code != 1 || !strings.Contains(errOut, "intercept.mode cannot change in a running instance (restart tcpchaos run") {
		t.Errorf("ctl set -f with another mode: exit %d, %q; want 1 and a restart needed", code, errOut)
	}
	st, err := s.ctl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Refused < 2 || !strings.Contains(st.LastError, "intercept.mode") || st.Reloads != 0 || st.Config != s.config {
		t.Errorf("status after the refusals: %+v; want 2 refused (the last about intercept.mode), none done, the first config", st)
	}
	if out := s.wantCtl("status"); !strings.Contains(out, "last reload refused at") {
		t.Errorf("ctl status does not show the refusal:\n%s", out)
	}
	s.wantConnect(port, true, "after the refused reloads")
	if _, m := scrape(t, s.chaos.metricsAt(t)); !strings.Contains(m, `tcpchaos_config_reloads_total{result="refused"} 2`) || !strings.Contains(m, `tcpchaos_config_reloads_total{result="ok"} 0`) {
		t.Errorf("metrics do not count 2 refused reloads and none done:\n%s", m)
	}
	s.chaos.stop()
}

// TestDisableEnableRule turns a rule off and on again between connections
// of one test, and lists the connections through `ctl conns --json`.
func TestDisableEnableRule(t *testing.T) {
	t.Parallel()
	s := newSteered(t, plainConfig(t, config([]int{port}, loseFirstSyn)))
	first := s.wantConnect(port, true, "enabled")
	if out := s.wantCtl("rules", "disable", "lose-first-syn"); !strings.Contains(out, "enabled no") {
		t.Errorf("ctl rules disable: %q", out)
	}
	second := s.wantConnect(port, false, "disabled")
	s.wantCtl("rules", "enable", "lose-first-syn")
	s.wantConnect(port, true, "enabled again")
	var rs []ctlclient.Rule
	if err := json.Unmarshal([]byte(s.wantCtl("rules", "--json")), &rs); err != nil || len(rs) != 1 || rs[0].Hits != 2 || !rs[0].Enabled {
		t.Errorf("ctl rules --json: %+v, %v; want lose-first-syn enabled with 2 hits", rs, err)
	}
	if code, _, errOut := s.ctlRun("rules", "disable", "nope"); code != 1 || !strings.Contains(errOut, `no rule named "nope"`) {
		t.Errorf("ctl rules disable nope: exit %d, %q", code, errOut)
	}

	var conns []ctlclient.Conn
	if err := json.Unmarshal([]byte(s.wantCtl("conns", "--json", "--state", "ESTABLISHED", "--port", fmt.Sprint(port))), &conns); err != nil {
		t.Fatalf("ctl conns --json: %v", err)
	}
	byClient := map[string]ctlclient.Conn{}
	for _, c := range conns {
		byClient[c.Client] = c
	}
	for _, tc := range []struct {
		c            net.Conn
		syns, faults uint64
	}{{first, 2, 1}, {second, 1, 0}} {
		c, ok := byClient[tc.c.LocalAddr().String()]
		if !ok {
			t.Errorf("ctl conns lists no connection from %s: %+v", tc.c.LocalAddr(), conns)
			continue
		}
		if c.ClientState != "ESTABLISHED" || c.ServerState != "ESTABLISHED" || c.Packets["syn"] != tc.syns || c.Faults != tc.faults || c.Age <= 0 {
			t.Errorf("connection %s: %+v; want both ESTABLISHED, %d SYNs, %d faults, an age", c.Client, c, tc.syns, tc.faults)
		}
	}
	t.Logf("ctl conns:\n%s", s.wantCtl("conns"))
	t.Logf("ctl rules:\n%s", s.wantCtl("rules"))
	t.Logf("ctl status:\n%s", s.wantCtl("status"))
	tl := s.wantCtl("timeline", first.LocalAddr().String())
	if !strings.Contains(tl, "lose-first-syn") || !strings.Contains(tl, "x") {
		t.Errorf("ctl timeline of the first connection does not show the lost SYN:\n%s", tl)
	}
	t.Logf("ctl timeline:\n%s", tl)
	if code, _, _ := s.ctlRun("timeline", "198.18.0.1:1"); code != 1 {
		t.Errorf("ctl timeline of an unknown connection: exit %d, want 1", code)
	}
	s.chaos.stop()
}

// TestReloadWakesQuietConnections: without rules on the data phase, an
// established connection goes quiet (its data bypasses the queue); a
// reload that adds a rule on data takes the bypass out, so the rule acts
// on that connection's next request, and the connection is tracked on.
func TestReloadWakesQuietConnections(t *testing.T) {
	t.Parallel()
	s := newSteered(t, plainConfig(t, config([]int{port}, noRules)))
	c := s.wantConnect(port, false, "no rules")
	request(t, c)
	conns, err := s.ctl.Conns(context.Background(), ctlclient.ConnFilter{})
	if err != nil || len(conns) != 1 || !conns[0].Quiet {
		t.Fatalf("conns before the reload: %+v, %v; want the connection, quiet", conns, err)
	}
	writeFile(t, s.config, config([]int{port}, `rules:
  - name: slow-requests
    match: {packet: data, from: client}
    action: {delay: 150ms}
    limit: 1
`))
	if r, err := s.ctl.Reload(context.Background()); err != nil || r.Quiet {
		t.Fatalf("reload: %+v, %v; want the data phase queued", r, err)
	}
	start := time.Now()
	request(t, c)
	// 150 ms: shorter than the minimum RTO (200 ms), so that the request
	// is not retransmitted meanwhile (on a loaded box it may be: limit 1
	// lets the retransmission through).
	if took := time.Since(start); took < 140*time.Millisecond {
		t.Errorf("request on the woken connection took %v, want >= 140ms (its data delayed by 150ms)", took)
	}
	conns, err = s.ctl.Conns(context.Background(), ctlclient.ConnFilter{})
	if err != nil || len(conns) != 1 || conns[0].Quiet || conns[0].Faults != 1 || conns[0].ClientState != "ESTABLISHED" {
		t.Errorf("conns after the reload: %+v, %v; want the same connection, awake, ESTABLISHED, one fault", conns, err)
	}
	evs := s.chaos.stop()
	f := faults(evs)
	if len(f) != 1 || f[0].Rule != "slow-requests" || f[0].Action != rules.Delay || f[0].Kind != statetrack.Data || f[0].Retransmission {
		t.Errorf("faults %s, want one delay of an original data segment by slow-requests", dumpEvents(f))
	}
}

// TestReloadPorts: a reload that adds a port intercepts its connections
// from then on.
func TestReloadPorts(t *testing.T) {
	t.Parallel()
	s := newSteered(t, plainConfig(t, config([]int{port}, loseFirstSyn)))
	s.wantConnect(altPort, false, "port not intercepted")
	writeFile(t, s.config, config([]int{port, altPort}, loseFirstSyn))
	r, err := s.ctl.Reload(context.Background())
	if err != nil || len(r.Changed) != 1 || r.Changed[0] != "intercept" {
		t.Fatalf("reload: %+v, %v; want intercept changed", r, err)
	}
	s.wantConnect(altPort, true, "port intercepted after the reload")
	s.wantConnect(port, true, "the first port still intercepted")
	s.chaos.stop() // no chain left, new or old
}

// TestControlSocketOwnerOnly: the socket is 0600, so a user other than
// its owner cannot connect; a second run on the same socket is refused
// before it installs anything.
func TestControlSocketOwnerOnly(t *testing.T) {
	t.Parallel()
	// A directory others may enter, so that only the socket's own mode
	// keeps them out.
	dir, err := os.MkdirTemp("", "tcpchaos-ctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "tcpchaos")
	if out, err := exec.Command("cp", tcpchaosBin, bin).CombinedOutput(); err != nil {
		t.Fatalf("copy tcpchaos: %v %s", err, out)
	}
	tp := netlabtest.NewTopology(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, config([]int{port}, loseFirstSyn))
	sock := filepath.Join(dir, "ctl.sock")
	chaos := startTcpchaos(t, tp.Router, path, "--control", sock)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
		t.Fatalf("control socket: %v, mode %v; want mode 0600, owned by us", err, fi.Mode())
	}
	if code, _, errOut := runTcpchaos(t, "ctl", "--control", sock, "status"); code != 0 {
		t.Fatalf("ctl status as the owner: exit %d %s", code, errOut)
	}
	ctx, cancel := context.WithTimeout(t.Context(), stopTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "ctl", "--control", sock, "status")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "permission denied") {
		t.Errorf("ctl status as nobody: %v, %s; want exit 1 and permission denied", err, out)
	}

	// A second instance (in another namespace) on the same socket.
	other := netlabtest.NewNamespace(t, "other")
	code, _, errOut := runTcpchaos(t, "run", "-c", path, "--netns", other.Path, "--control", sock, "--duration", "1s")
	if code != 1 || !strings.Contains(errOut, "another tcpchaos run is serving it") {
		t.Errorf("second run on a live socket: exit %d, %q; want 1, refused", code, errOut)
	}
	if left := chainsIn(t, other); left != "" {
		t.Errorf("the refused run installed rules:\n%s", left)
	}
	chaos.stop()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket left after the run: %v", err)
	}
}

// TestReloadCarriesLimits: a rule whose name survives a reload keeps the
// packets its limit already spent.
func TestReloadCarriesLimits(t *testing.T) {
	t.Parallel()
	limited := `rules:
  - name: lose-two-syns
    match: {packet: syn, nth: 1}
    action: drop
    limit: 2
`
	s := newSteered(t, plainConfig(t, config([]int{port}, limited)))
	s.wantConnect(port, true, "limit 2, first")
	writeFile(t, s.config, config([]int{port}, limited+`  - name: slow-fins
    match: {packet: fin}
    action: {delay: 1ms}
`))
	if r, err := s.ctl.Reload(context.Background()); err != nil || len(r.Changed) != 1 {
		t.Fatalf("reload: %+v, %v; want the rules changed", r, err)
	}
	s.wantConnect(port, true, "limit 2, second (after the reload)")
	s.wantConnect(port, false, "limit 2 spent")
	rs, err := s.ctl.Rules(context.Background())
	if err != nil || len(rs) != 2 || rs[0].Hits != 2 || rs[0].LimitLeft == nil || *rs[0].LimitLeft != 0 {
		t.Errorf("rules after the reload: %+v, %v; want lose-two-syns with 2 hits, none left", rs, err)
	}
	s.chaos.stop()
}

// TestTwoQueuesConnIDs: on two queues (each with its own tracker, the
// kernel balancing the connections by address) every connection has a
// conn_id of its own, in ctl conns, in ctl timeline ID and in the events,
// and ctl timeline ID finds the connection it names, on either queue.
func TestTwoQueuesConnIDs(t *testing.T) {
	t.Parallel()
	s := newSteered(t, plainConfig(t, strings.Replace(config([]int{port}, noRules), "  mode: forward\n", "  mode: forward\n  queues: 2\n", 1)))
	// Sources enough that both queues get connections (all on one:
	// 2^-15).
	const sources = 16
	var script []string
	src := netip.MustParseAddr("198.18.1.100")
	srcs := make([]netip.Addr, sources)
	for i := range srcs {
		srcs[i] = src
		script = append(script, fmt.Sprintf("addr add %s/24 dev %s", src, s.tp.HostIf))
		src = src.Next()
	}
	s.tp.Client.IP(t, strings.Join(script, "\n"))
	dst := netip.AddrPortFrom(s.tp.Server4, port).String()
	clients := map[string]bool{}
	for _, a := range srcs {
		var c net.Conn
		err := s.tp.Client.Do(func() (err error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: a.AsSlice()}, Timeout: ioTimeout}
			c, err = d.Dial("tcp", dst)
			return err
		})
		if err != nil {
			t.Fatalf("dial %s from %s: %v", dst, a, err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
		request(t, c)
		clients[c.LocalAddr().String()] = true
	}
	var st ctlclient.Status
	if err := json.Unmarshal([]byte(s.wantCtl("status", "--json")), &st); err != nil || len(st.Queues) != 2 || st.Queues[0].Received == 0 || st.Queues[1].Received == 0 {
		t.Fatalf("ctl status --json: %+v, %v; want packets on both queues", st.Queues, err)
	}
	var conns []ctlclient.Conn
	if err := json.Unmarshal([]byte(s.wantCtl("conns", "--json")), &conns); err != nil {
		t.Fatalf("ctl conns --json: %v", err)
	}
	ids := map[uint64]string{}
	for _, c := range conns {
		if other, ok := ids[c.ID]; ok {
			t.Errorf("ctl conns: conn_id %d for %s and %s", c.ID, other, c.Client)
		}
		ids[c.ID] = c.Client
	}
	if len(ids) != sources {
		t.Errorf("ctl conns: %d conn_ids for %d connections, want %d", len(ids), len(conns), sources)
	}
	for id, client := range ids {
		if !clients[client] {
			t.Errorf("ctl conns: conn_id %d of an unknown client %s", id, client)
		}
		var tl ctlclient.Timeline
		if err := json.Unmarshal([]byte(s.wantCtl("timeline", "--json", fmt.Sprint(id))), &tl); err != nil || tl.Conn.ID != id || tl.Conn.Client != client || tl.Conn.Packets["syn"] != 1 {
			t.Errorf("ctl timeline %d: %+v, %v; want the connection of %s, its one SYN", id, tl.Conn, err, client)
		}
	}
	tuples := map[uint64]map[string]bool{}
	for _, e := range s.chaos.stop() {
		if e.ConnID == 0 {
			continue
		}
		if tuples[e.ConnID] == nil {
			tuples[e.ConnID] = map[string]bool{}
		}
		tuples[e.ConnID][e.Conn()] = true
	}
	for id, ts := range tuples {
		if len(ts) != 1 {
			t.Errorf("events: conn_id %d for %d connections: %v", id, len(ts), ts)
		}
	}
}
