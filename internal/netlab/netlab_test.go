package netlab_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
)

// TestCloseAfterFailedTopology builds a topology whose server namespace
// exists already: Topology fails after creating the client and the router,
// and Close still removes all three, kills the process left in one, and is
// a no-op the second time.
func TestCloseAfterFailedTopology(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	lab := netlab.New(fmt.Sprintf("tcx-netlab-%d", os.Getpid()))
	t.Cleanup(func() { _ = lab.Close() })
	server, err := lab.Namespace("server")
	if err != nil {
		t.Fatal(err)
	}
	if server.Name != lab.Prefix()+"-server" {
		t.Errorf("namespace name = %q, want %q", server.Name, lab.Prefix()+"-server")
	}
	sleep := server.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Topology(); err == nil || !strings.Contains(err.Error(), "build topology") {
		t.Fatalf("Topology with an existing server namespace = %v, want a build topology error", err)
	}
	names := []string{lab.Prefix() + "-client", lab.Prefix() + "-router", server.Name}
	for _, name := range names {
		if !slices.Contains(netlabtest.Namespaces(t), name) {
			t.Fatalf("namespace %s missing before Close", name)
		}
	}
	if err := lab.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, name := range names {
		if slices.Contains(netlabtest.Namespaces(t), name) {
			t.Errorf("namespace %s still exists after Close", name)
		}
	}
	// Close sent SIGKILL: Wait returns at once (were it not sent, after 60 s).
	if err := sleep.Wait(); err == nil || sleep.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("sleep 60 in the namespace ended with %v, want killed by SIGKILL", err)
	}
	if err := lab.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}
