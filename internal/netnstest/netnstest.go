// Package netnstest builds throwaway network namespaces for tcpchaos's
// end-to-end tests: real kernel TCP stacks as the peers, tcpdump captures
// and ss/nstat as the oracle.
//
// A test asks for privileges first (NewNamespace and NewTopology do it for
// it) and gets namespaces that t.Cleanup removes again, together with every
// process still running in them:
//
//	tp := netnstest.NewTopology(t)
//	ln := tp.Server.Listen(t, "tcp", "198.19.2.2:8080")
//	c := tp.Router.Capture(t, tp.RouterServerIf, "tcp port 8080")
//	conn, err := tp.Client.Dial("tcp", "198.19.2.2:8080", time.Second)
//	pkts := c.Stop() // every TCP segment, with flags, seq, ack, len, time
//
// Namespace names carry a hash of the test name, the process id and a
// counter, so parallel tests and reruns never collide.
package netnstest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/tcpchaos/tcpchaos/internal/netnsutil"
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
	err := checkPrivileged()
	if err == nil {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("namespace test cannot run: %v (%s=1 forbids skipping)", err, RequireEnv)
	} else {
		t.Skipf("namespace test skipped: %v (run as root with iproute2, iptables and tcpdump installed; %s=1 turns this skip into a failure)", err, RequireEnv)
	}
}

func checkPrivileged() error {
	if os.Geteuid() != 0 {
		return errors.New("not running as root")
	}
	if err := netnsutil.CheckNetAdmin(); err != nil {
		return err
	}
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing binaries in PATH: %s", strings.Join(missing, ", "))
	}
	return nil
}

// NS is a network namespace made for one test. Its Name is usable with
// "ip netns exec" and "ip -n"; Path is its file under /run/netns; Handle is
// an open descriptor of it (for netlink.NewHandleAt and the like), closed
// by the test's cleanup.
type NS struct {
	Name   string
	Path   string
	Handle netns.NsHandle
}

var nsCounter atomic.Uint64

// nsName builds a unique namespace name: "tcx-<hash of the test name>-<pid>-<n>-<role>".
func nsName(t testing.TB, role string) string {
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	return fmt.Sprintf("tcx-%08x-%d-%d-%s", h.Sum32(), os.Getpid(), nsCounter.Add(1), role)
}

// NewNamespace creates an empty network namespace with its loopback up and
// IPv6 duplicate address detection off (addresses are usable at once). role
// ends its name ("client", "router", ...). The namespace, and any process
// still running in it, is removed by t.Cleanup.
func NewNamespace(t testing.TB, role string) *NS {
	t.Helper()
	RequirePrivileged(t)
	name := nsName(t, role)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("create network namespace %s: %v: %s", name, err, out)
	}
	n := &NS{Name: name, Path: netnsutil.Path(name), Handle: netns.None()}
	t.Cleanup(func() { n.remove(t) })
	h, err := netns.GetFromPath(n.Path)
	if err != nil {
		t.Fatalf("open network namespace %s: %v", name, err)
	}
	n.Handle = h
	n.Sysctl(t, "net.ipv6.conf.all.accept_dad", "0")
	n.Sysctl(t, "net.ipv6.conf.default.accept_dad", "0")
	n.IP(t, "link set lo up")
	return n
}

// remove kills the processes left in the namespace (never this test
// process, whose threads may visit it) and deletes it.
func (n *NS) remove(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "pids", n.Name).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid == os.Getpid() {
				continue
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if n.Handle.IsOpen() {
		n.Handle.Close()
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		t.Errorf("delete network namespace %s: %v: %s", n.Name, err, out)
	}
}

// Do runs fn on a fresh OS thread switched into the namespace and returns
// fn's error. Sockets fn opens keep the namespace after Do returns, and
// processes fn forks start in it. A goroutine started inside fn does not
// inherit the namespace (it runs on another thread), and fn runs on another
// goroutine than the test's: it must return an error rather than call
// t.Fatal.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		exit, err := netnsutil.Enter(n.Path)
		if err != nil {
			errc <- err
			return
		}
		defer exit()
		errc <- fn()
	}()
	return <-errc
}

// Command returns a command that runs name with args inside the namespace
// (through "ip netns exec", which execs in place: the command's Process.Pid
// is the program's own).
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs name with args inside the namespace and returns its standard
// output; it fails the test, showing standard error, when the command fails.
func (n *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := n.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %s %s: %v: %s", n.Name, name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// IP runs "ip -n NAME -batch -" with each line of script as one ip command
// (for example "addr add 198.18.1.2/24 dev eth0"), failing the test on error.
func (n *NS) IP(t testing.TB, script string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", n.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(script + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: ip batch failed: %v: %s\nscript:\n%s", n.Name, err, out, script)
	}
}

// Sysctl sets a sysctl (dotted name) inside the namespace.
func (n *NS) Sysctl(t testing.TB, name, value string) {
	t.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	if err := n.Do(func() error { return os.WriteFile(path, []byte(value), 0o644) }); err != nil {
		t.Fatalf("%s: sysctl %s=%s: %v", n.Name, name, value, err)
	}
}

// Listen opens a listener inside the namespace (the socket keeps the
// namespace; Accept may then be called from any goroutine). t.Cleanup closes
// it.
func (n *NS) Listen(t testing.TB, network, address string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		t.Fatalf("%s: listen %s %s: %v", n.Name, network, address, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Dial connects from inside the namespace, giving up after timeout. Its
// error is returned, not reported: a failing connect is often what a fault
// test expects. address must be a literal address and port.
func (n *NS) Dial(network, address string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := n.Do(func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}
