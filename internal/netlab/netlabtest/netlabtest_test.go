package netlabtest

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCleanupRemovesEverything checks that a test's namespaces and the
// processes left in them are gone once the test ends.
func TestCleanupRemovesEverything(t *testing.T) {
	var name string
	var cmd *exec.Cmd
	t.Run("inner", func(t *testing.T) {
		n := NewNamespace(t, "probe")
		name = n.Name
		cmd = n.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if list := Namespaces(t); !slices.Contains(list, name) {
			t.Fatalf("ip netns list does not show %s: %v", name, list)
		}
	})
	if name == "" {
		t.Skip("inner test did not run")
	}
	if list := Namespaces(t); slices.Contains(list, name) {
		t.Errorf("namespace %s still exists after its test: %v", name, list)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err == nil {
			t.Errorf("sleep 60 in the namespace exited cleanly, want it killed")
		}
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		t.Errorf("sleep 60 in the namespace still runs after its test")
	}
}

// recordingTB records how RequirePrivileged ends a test instead of ending it.
type recordingTB struct {
	testing.TB
	ended string
}

func (r *recordingTB) Helper()                      {}
func (r *recordingTB) Fatalf(f string, args ...any) { r.ended = "fatal: " + fmt.Sprintf(f, args...) }
func (r *recordingTB) Skipf(f string, args ...any)  { r.ended = "skip: " + fmt.Sprintf(f, args...) }

func TestRequirePrivilegedWithoutTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for env, want := range map[string]string{"": "skip: ", "0": "skip: ", "1": "fatal: "} {
		t.Setenv(RequireEnv, env)
		r := &recordingTB{TB: t}
		RequirePrivileged(r)
		if !strings.HasPrefix(r.ended, want) || !strings.Contains(r.ended, "tcpdump") {
			t.Errorf("%s=%q without tools in PATH: RequirePrivileged ended the test with %q, want %q… naming tcpdump", RequireEnv, env, r.ended, want)
		}
	}
}
