package netlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotRoot is returned by Check when the process does not run as root.
var ErrNotRoot = errors.New("not running as root")

// MissingError is returned by Check when programs are missing from PATH.
type MissingError struct {
	// Tools are the missing programs, in the order they were asked for.
	Tools []string
}

// Error lists the missing programs.
func (e *MissingError) Error() string {
	return "missing binaries in PATH: " + strings.Join(e.Tools, ", ")
}

// Check returns nil when the process runs as root with CAP_NET_ADMIN and
// finds every one of tools in PATH; otherwise ErrNotRoot,
// ErrNoNetAdmin or a *MissingError naming all missing tools.
func Check(tools ...string) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if err := CheckNetAdmin(); err != nil {
		return err
	}
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return &MissingError{Tools: missing}
	}
	return nil
}

// ErrNoNetAdmin is returned by CheckNetAdmin when the process lacks
// CAP_NET_ADMIN.
var ErrNoNetAdmin = errors.New("missing CAP_NET_ADMIN: run as root (or grant the capability)")

// CheckNetAdmin returns nil when the process's effective capabilities
// include CAP_NET_ADMIN (needed for iptables and NFQUEUE), ErrNoNetAdmin
// when they do not, and another error when they cannot be read.
func CheckNetAdmin() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read process capabilities: %w", err)
	}
	if data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) == 0 {
		return ErrNoNetAdmin
	}
	return nil
}
