package netlab_test

import (
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
)

func TestPath(t *testing.T) {
	for in, want := range map[string]string{
		"blue":              "/run/netns/blue",
		"/proc/1/ns/net":    "/proc/1/ns/net",
		"./relative/handle": "./relative/handle",
	} {
		if got := netlab.Path(in); got != want {
			t.Errorf("Path(%q) = %q, want %q", in, got, want)
		}
	}
}

// hasInterface reports whether the calling thread's namespace has an
// interface called name (net.Interfaces opens its netlink socket on the
// calling thread).
func hasInterface(t *testing.T, name string) bool {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatalf("list interfaces: %v", err)
	}
	for _, i := range ifs {
		if i.Name == name {
			return true
		}
	}
	return false
}

func TestEnter(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "enter")
	const probe = "tcx-probe0"
	ns.IP(t, "link add "+probe+" type veth peer name tcx-probe1")

	for label, target := range map[string]string{"name": ns.Name, "path": ns.Path} {
		t.Run(label, func(t *testing.T) {
			// Run on a goroutine of its own so that a failed restore
			// cannot leave the test's thread in the namespace.
			done := make(chan struct{})
			go func() {
				defer close(done)
				exit, err := netlab.Enter(target)
				if err != nil {
					t.Errorf("Enter(%q): %v", target, err)
					return
				}
				if !hasInterface(t, probe) {
					t.Errorf("a socket opened inside %s does not see %s", target, probe)
				}
				out, err := exec.Command("ip", "-o", "link").CombinedOutput()
				if err != nil || !strings.Contains(string(out), probe) {
					t.Errorf("ip -o link forked from the entered thread = %v, %s; want %s listed", err, out, probe)
				}
				exit()
				exit() // a second call is harmless
				if hasInterface(t, probe) {
					t.Errorf("after exit the thread still sees %s", probe)
				}
			}()
			<-done
		})
	}
}

func TestEnterStaysOnThread(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "thread")
	done := make(chan struct{})
	go func() {
		defer close(done)
		exit, err := netlab.Enter(ns.Name)
		if err != nil {
			t.Errorf("Enter: %v", err)
			return
		}
		defer exit()
		// Yielding must not move the goroutine off its namespaced thread.
		for range 100 {
			runtime.Gosched()
		}
		ifs, err := net.Interfaces()
		if err != nil || len(ifs) != 1 || ifs[0].Name != "lo" {
			t.Errorf("interfaces inside a fresh namespace = %v, %v; want only lo", ifs, err)
		}
	}()
	<-done
}

func TestEnterMissing(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	_, err := netlab.Enter("tcx-no-such-namespace")
	if err == nil || !strings.Contains(err.Error(), "/run/netns/tcx-no-such-namespace") {
		t.Errorf("Enter of a missing namespace = %v, want an error naming its path", err)
	}
}
