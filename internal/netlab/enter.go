package netlab

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RunDir is where iproute2 keeps named network namespaces ("ip netns add").
const RunDir = "/run/netns"

// Path returns the file of a namespace given by name or path: a value with a
// '/' is a path (for example /proc/1234/ns/net), anything else the name of a
// namespace under RunDir.
func Path(nameOrPath string) string {
	if strings.ContainsRune(nameOrPath, '/') {
		return nameOrPath
	}
	return filepath.Join(RunDir, nameOrPath)
}

// Enter locks the calling goroutine to its OS thread and switches the thread
// into the network namespace nameOrPath (see Path). The returned exit
// switches the thread back and unlocks it; it is safe to call more than
// once. Call exit from the same goroutine.
//
// If switching back fails, exit leaves the goroutine locked: the Go runtime
// then discards the thread, still in the foreign namespace, when the
// goroutine ends, so no other goroutine ever runs in the wrong namespace.
// Entering needs CAP_SYS_ADMIN.
func Enter(nameOrPath string) (exit func(), err error) {
	path := Path(nameOrPath)
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %q: %w", path, err)
	}
	defer target.Close()

	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open current network namespace: %w", err)
	}
	if err := netns.Set(target); err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (needs CAP_SYS_ADMIN: run as root)", err)
		}
		return nil, fmt.Errorf("enter network namespace %q: %w", path, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			defer orig.Close()
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
		})
	}, nil
}
