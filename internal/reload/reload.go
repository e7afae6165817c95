// Package reload decides what a new config may change in a running
// instance: the rules and the intercepted ports and hosts change live;
// everything else (the interception mode and queue numbers, the tracker's
// sizes and timers, the seed, the expectations) is fixed for the run, and
// a new config that changes it is refused with the keys that would need a
// restart. Decoding and validating the new config is the config package's
// job; applying the change is the caller's.
package reload

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/tcpchaos/tcpchaos/internal/config"
)

// Change is what a new config changes that may change live.
type Change struct {
	// Rules: the rule list differs (order, names, matches, actions,
	// probabilities or limits).
	Rules bool
	// Intercept: intercept.ports or intercept.hosts differ, so the
	// interception's chains must be replaced.
	Intercept bool
}

// None reports whether the new config changes nothing.
func (c Change) None() bool { return !c.Rules && !c.Intercept }

// RestartError refuses a new config that changes keys fixed for the run.
type RestartError struct {
	// Keys are the config key paths that changed, in the config's order.
	Keys []string
}

func (e *RestartError) Error() string {
	return fmt.Sprintf("%s cannot change in a running instance (restart tcpchaos run to apply it)", strings.Join(e.Keys, ", "))
}

// Diff compares the config in force with a new, valid one. It returns a
// *RestartError when the new one changes a key that is fixed for the run.
func Diff(old, next config.Config) (Change, error) {
	var fixed []string
	differ := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			fixed = append(fixed, key)
		}
	}
	oi, ni := old.Intercept, next.Intercept
	differ("intercept.mode", oi.Mode, ni.Mode)
	differ("intercept.queue", oi.Queue, ni.Queue)
	differ("intercept.queues", oi.Queues, ni.Queues)
	differ("intercept.queue-length", oi.QueueLength, ni.QueueLength)
	ot, nt := old.Tracker, next.Tracker
	differ("tracker.msl", ot.MSL, nt.MSL)
	differ("tracker.max-connections", ot.MaxConnections, nt.MaxConnections)
	differ("tracker.idle-timeout", ot.IdleTimeout, nt.IdleTimeout)
	differ("tracker.quiet-timeout", ot.QuietTimeout, nt.QuietTimeout)
	differ("seed", old.Seed, next.Seed)
	differ("expect", old.Expect, next.Expect)
	if len(fixed) > 0 {
		return Change{}, &RestartError{Keys: fixed}
	}
	return Change{
		Rules:     !reflect.DeepEqual(old.Rules, next.Rules),
		Intercept: !slices.Equal(oi.Ports, ni.Ports) || !slices.Equal(oi.Hosts, ni.Hosts),
	}, nil
}
