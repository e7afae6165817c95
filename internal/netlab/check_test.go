package netlab_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
)

func TestCheckMissingTools(t *testing.T) {
	if os.Geteuid() != 0 {
		if err := netlab.Check("ip"); !errors.Is(err, netlab.ErrNotRoot) {
			t.Fatalf("Check as non-root = %v, want ErrNotRoot", err)
		}
		return
	}
	t.Setenv("PATH", t.TempDir())
	err := netlab.Check("ip", "iptables")
	var me *netlab.MissingError
	if !errors.As(err, &me) || strings.Join(me.Tools, " ") != "ip iptables" {
		t.Fatalf("Check with an empty PATH = %v, want a MissingError naming ip and iptables", err)
	}
}

func TestCheckNetAdmin(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	if err := netlab.CheckNetAdmin(); err != nil {
		if errors.Is(err, netlab.ErrNoNetAdmin) {
			t.Fatalf("CheckNetAdmin as a privileged user: %v", err)
		}
		t.Fatal(err)
	}
}
