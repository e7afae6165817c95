// Package netlab works with network namespaces on the local host. It
// enters one (Enter, for tcpchaos run --netns), checks the privilege the
// live path needs (CheckNetAdmin, Check), and builds throwaway ones: a Lab
// creates named namespaces (optionally a client, a router and a server
// joined by veth pairs, see Topology) and Close removes them again,
// together with every process still running in them.
//
// It is what `tcpchaos demo` and the benchmark suite run in; its test
// companion internal/netlab/netlabtest wraps it for tests. Building and
// entering namespaces needs root. The package example shows a topology
// built, a connection across it, and its removal.
//
// A network namespace belongs to an OS thread, not to a goroutine: Enter
// locks the calling goroutine to its thread for as long as it is inside.
// Sockets keep the namespace they were opened in, and processes forked from
// the thread start in it; goroutines started while inside run on other
// threads and do not inherit it. So the live path opens its netlink and raw
// sockets and runs iptables from the entered goroutine, before exiting.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// Lab is a set of network namespaces named "<prefix>-<role>". The zero
// value is not usable; call New. A Lab is safe for concurrent use.
type Lab struct {
	prefix string

	mu     sync.Mutex
	spaces []*NS // in creation order
}

// New returns an empty lab whose namespaces are named "<prefix>-<role>".
// The prefix should make the names unique on the host, for example by
// including the process id. Nothing is created until Namespace or Topology.
func New(prefix string) *Lab { return &Lab{prefix: prefix} }

// Prefix returns the prefix of the lab's namespace names.
func (l *Lab) Prefix() string { return l.prefix }

// NS is a network namespace of a lab. Its Name is usable with
// "ip netns exec" and "ip -n"; Path is its file under /run/netns; Handle is
// an open descriptor of it (for netlink.NewHandleAt and the like), closed
// by the lab's Close.
type NS struct {
	Name   string
	Path   string
	Handle netns.NsHandle
}

// Namespace creates the empty network namespace "<prefix>-<role>" with its
// loopback up and IPv6 duplicate address detection off (addresses are
// usable at once). Once created, the namespace belongs to the lab even when
// a later setup step fails: Close removes it.
func (l *Lab) Namespace(role string) (*NS, error) {
	name := l.prefix + "-" + role
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("create network namespace %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	n := &NS{Name: name, Path: Path(name), Handle: netns.None()}
	l.mu.Lock()
	l.spaces = append(l.spaces, n)
	l.mu.Unlock()
	h, err := netns.GetFromPath(n.Path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", name, err)
	}
	n.Handle = h
	for _, s := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := n.Sysctl(s, "0"); err != nil {
			return nil, err
		}
	}
	if err := n.IP("link set lo up"); err != nil {
		return nil, err
	}
	return n, nil
}

// Close removes every namespace of the lab, newest first, after killing
// the processes left in it (never this process, whose threads may visit
// it). It reports every failure, and removes nothing twice: a second Close
// returns nil.
func (l *Lab) Close() error {
	l.mu.Lock()
	spaces := l.spaces
	l.spaces = nil
	l.mu.Unlock()
	var errs []error
	for i := len(spaces) - 1; i >= 0; i-- {
		errs = append(errs, spaces[i].remove())
	}
	return errors.Join(errs...)
}

// remove kills the processes left in the namespace and deletes it.
func (n *NS) remove() error {
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
		return fmt.Errorf("delete network namespace %s: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Do runs fn on a fresh OS thread switched into the namespace and returns
// fn's error. Sockets fn opens keep the namespace after Do returns, and
// processes fn forks start in it. A goroutine started inside fn does not
// inherit the namespace (it runs on another thread).
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		exit, err := Enter(n.Path)
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
	argv := n.Argv(name, args...)
	return exec.Command(argv[0], argv[1:]...)
}

// Argv returns the command line that Command runs, for callers that start
// the process themselves (with a context, say).
func (n *NS) Argv(name string, args ...string) []string {
	return append([]string{"ip", "netns", "exec", n.Name, name}, args...)
}

// Run runs name with args inside the namespace and returns its standard
// output; its error shows standard error when the command fails.
func (n *NS) Run(name string, args ...string) (string, error) {
	cmd := n.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %s %s: %w: %s", n.Name, name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// IP runs "ip -n NAME -batch -" with each line of script as one ip command
// (for example "addr add 198.18.1.2/24 dev eth0").
func (n *NS) IP(script string) error {
	cmd := exec.Command("ip", "-n", n.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(script + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: ip batch: %w: %s\nscript:\n%s", n.Name, err, strings.TrimSpace(string(out)), script)
	}
	return nil
}

// Sysctl sets a sysctl (dotted name) inside the namespace.
func (n *NS) Sysctl(name, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	if err := n.Do(func() error { return os.WriteFile(path, []byte(value), 0o644) }); err != nil {
		return fmt.Errorf("%s: sysctl %s=%s: %w", n.Name, name, value, err)
	}
	return nil
}

// Listen opens a listener inside the namespace. The socket keeps the
// namespace: Accept may then be called from any goroutine.
func (n *NS) Listen(network, address string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s %s: %w", n.Name, network, address, err)
	}
	return ln, nil
}

// DialContext connects from inside the namespace until ctx is done.
// address must be a literal address and port (no name lookup happens in
// the namespace).
func (n *NS) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := n.Do(func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// Dial is DialContext giving up after timeout.
func (n *NS) Dial(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.DialContext(ctx, network, address)
}
