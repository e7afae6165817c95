// Package netlabtest provides network namespaces for tcpchaos's tests, as
// net/http/httptest does servers for net/http: real kernel TCP stacks as
// the peers, tcpdump captures and ss/nstat as the oracle.
//
// A test asks for privileges first (NewNamespace and NewTopology do it for
// it) and gets namespaces that t.Cleanup removes again, together with every
// process still running in them:
//
//	tp := netlabtest.NewTopology(t)
//	ln := tp.Server.Listen(t, "tcp", "198.19.2.2:8080")
//	c := tp.Router.Capture(t, tp.RouterServerIf, "tcp port 8080")
//	conn, err := tp.Client.Dial("tcp", "198.19.2.2:8080", time.Second)
//	pkts := c.Stop() // every TCP segment, with flags, seq, ack, len, time
//
// Namespace names carry a hash of the test name, the process id and a
// counter, so parallel tests and reruns never collide. The namespaces are
// built by internal/netlab (shared with `tcpchaos demo` and the benchmark
// suite); this package adds what only tests use: the privilege gate,
// t.Cleanup, captures, ss readers and an accept-loop server.
package netlabtest

import (
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// RequireEnv is the environment variable that turns the skip of
// RequirePrivileged into a failure; .ci/run sets it to 1.
const RequireEnv = "TCPCHAOS_REQUIRE_PRIVILEGED"

// tools are the binaries the harness and the tests built on it run.
var tools = []string{"ip", "ss", "nstat", "iptables", "ip6tables", "tcpdump"}

// RequirePrivileged skips the test unless it runs as root with
// CAP_NET_ADMIN and finds ip, ss, nstat, iptables, ip6tables and tcpdump in
// PATH. When the environment variable TCPCHAOS_REQUIRE_PRIVILEGED is "1" it
// fails the test instead of skipping it.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	err := netlab.Check(tools...)
	if err == nil {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("namespace test cannot run: %v (%s=1 forbids skipping)", err, RequireEnv)
	} else {
		t.Skipf("namespace test skipped: %v (run as root with iproute2, iptables and tcpdump installed; %s=1 turns this skip into a failure)", err, RequireEnv)
	}
}

// NS is a network namespace made for one test: a netlab.NS (Name, Path,
// Handle, Do, Command, Dial) whose Run, IP, Sysctl and Listen fail the test
// instead of returning an error. The test's cleanup closes its Handle and
// removes it. Do runs its function on another goroutine than the test's:
// that function must return an error rather than call t.Fatal.
type NS struct {
	*netlab.NS
}

var labCounter atomic.Uint64

// newLab returns a lab that t.Cleanup closes. Its namespaces are named
// "tcx-<hash of the test name>-<pid>-<n>-<role>", so parallel tests and
// reruns never collide.
func newLab(t testing.TB) *netlab.Lab {
	t.Helper()
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	lab := netlab.New(fmt.Sprintf("tcx-%08x-%d-%d", h.Sum32(), os.Getpid(), labCounter.Add(1)))
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	return lab
}

// Namespaces returns the names of the host's named network namespaces, as
// "ip netns list" shows them; it fails the test when it cannot list them.
func Namespaces(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// NewNamespace creates an empty network namespace with its loopback up and
// IPv6 duplicate address detection off (addresses are usable at once). role
// ends its name ("client", "router", ...). The namespace, and any process
// still running in it, is removed by t.Cleanup.
func NewNamespace(t testing.TB, role string) *NS {
	t.Helper()
	RequirePrivileged(t)
	n, err := newLab(t).Namespace(role)
	if err != nil {
		t.Fatal(err)
	}
	return &NS{n}
}

// Run runs name with args inside the namespace and returns its standard
// output; it fails the test, showing standard error, when the command fails.
func (n *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.NS.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// IP runs "ip -n NAME -batch -" with each line of script as one ip command
// (for example "addr add 198.18.1.2/24 dev eth0"), failing the test on error.
func (n *NS) IP(t testing.TB, script string) {
	t.Helper()
	if err := n.NS.IP(script); err != nil {
		t.Fatal(err)
	}
}

// Sysctl sets a sysctl (dotted name) inside the namespace.
func (n *NS) Sysctl(t testing.TB, name, value string) {
	t.Helper()
	if err := n.NS.Sysctl(name, value); err != nil {
		t.Fatal(err)
	}
}

// Listen opens a listener inside the namespace (the socket keeps the
// namespace; Accept may then be called from any goroutine). t.Cleanup closes
// it.
func (n *NS) Listen(t testing.TB, network, address string) net.Listener {
	t.Helper()
	ln, err := n.NS.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}
