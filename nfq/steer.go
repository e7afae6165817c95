//go:build linux

package nfq

import (
	"errors"
	"fmt"
	"slices"
)

// SetBypass takes out (on false) or puts back (on true) the rule that
// lets the data phase of quiet connections bypass the queue, in every
// address family: for a reload that changes whether the rules allow
// quiet connections (rules.Set.QuietAfter). Only an Interception installed
// with InstallOptions.Quiet has that rule; for another, SetBypass(true)
// is an error and SetBypass(false) does nothing.
//
// Taking it out wakes the connections that are quiet in the kernel, in
// their data phase or in a quiet close: their next packets are queued
// again, so the tracker takes each up where it left it
// (statetrack.Tracker.Quiet), and the verdicts on them, which must no
// longer let the connection go quiet (the caller forbids it: the
// pipelines' SetQuiet), clear its QuietMark (the filter table's chain
// copies the verdict's bit into the connection mark, or after the first
// FIN clears it; a held packet's release does too).
func (in *Interception) SetBypass(on bool) error {
	if !in.quiet {
		if on {
			return errors.New("set quiet bypass: the interception was installed without quiet connections (restart tcpchaos run to let them bypass the queue)")
		}
		return nil
	}
	var errs []error
	for _, f := range in.families {
		if f.bypass == on {
			continue
		}
		r := bypassRule
		var err error
		if on {
			err = f.ipt.Insert(r.table, r.name, 1+in.head(), r.spec...)
		} else {
			err = f.ipt.Delete(r.table, r.name, r.spec...)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: set quiet bypass %s: %w", f.plan.binary, r, err))
			continue
		}
		f.bypass = on
	}
	return errors.Join(errs...)
}

// ErrOldSelectionLeft: Update put the new selection in force, but failed
// to take all of the old one out (a host rule, or its emptied ports chain,
// is left; Remove tries the chain again).
var ErrOldSelectionLeft = errors.New("the new selection is in force, removing the old one failed")

// Update replaces which connections are intercepted by cfg's ports and
// hosts (the mode and the queues stay those installed), in the calling
// thread's network namespace, for a reload. In every address family the
// new selection (a new ports chain, and new host rules in Chain ahead of
// the old ones) is installed before the old one is taken out, so that for
// a moment a packet is selected by the new rules or, failing those, by
// the old ones: none that both select escapes, and none is queued twice
// (NFQUEUE ends its traversal). When installing fails, what was added is
// taken out and the old selection stays; when taking the old selection out
// fails, the error is ErrOldSelectionLeft. A change of hosts that adds or
// removes an address family's interception is refused (it needs a
// restart).
func (in *Interception) Update(cfg Intercept) error {
	plans, err := plan(cfg, InstallOptions{Quiet: in.quiet, Blackhole: in.dark})
	if err != nil {
		return fmt.Errorf("update interception: %w", err)
	}
	if len(plans) != len(in.families) {
		return errors.New("intercept.hosts: the new hosts add or remove an address family's interception (restart tcpchaos run to apply it)")
	}
	for i, p := range plans {
		if p.proto != in.families[i].plan.proto {
			return errors.New("intercept.hosts: the new hosts add or remove an address family's interception (restart tcpchaos run to apply it)")
		}
	}
	in.gen++
	ports := fmt.Sprintf("%s-%d", chainPorts, in.gen)
	hosts := make([][]rule, len(plans))
	for i, f := range in.families {
		hosts[i] = hostRules(plans[i].hosts, ports)
		if err := f.addSelection(hosts[i], ports, cfg.Ports, in.head()); err != nil {
			for j := range i {
				err = errors.Join(err, in.families[j].dropSelection(hosts[j], ports))
			}
			return fmt.Errorf("update interception: %w", err)
		}
	}
	var errs []error
	for i, f := range in.families {
		errs = append(errs, f.dropSelection(f.hosts, f.ports))
		f.hosts, f.ports = hosts[i], ports
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("update interception: %w: %w", ErrOldSelectionLeft, err)
	}
	return nil
}

// addSelection creates the ports chain ports with the rules of the server
// ports, then inserts hosts ahead of the family's host rules in Chain,
// which starts with head rules (the dark drops) before the bypass. On
// failure it takes out what it added.
func (f *family) addSelection(hosts []rule, ports string, serverPorts []uint16, head int) error {
	f.created = append(f.created, chainRef{Table, ports})
	err := f.ipt.NewChain(Table, ports)
	for _, r := range portRules(ports, serverPorts) {
		if err == nil {
			if err = f.ipt.Append(r.table, r.name, r.spec...); err != nil {
				err = fmt.Errorf("%s: add rule %s: %w", f.plan.binary, r, err)
			}
		}
	}
	// Chain holds the dark drops (head), the bypass rule (when in place),
	// the injected copies' RETURN, then the host rules.
	pos := head + 2
	if f.bypass {
		pos++
	}
	for i, r := range hosts {
		if err == nil {
			if err = f.ipt.Insert(r.table, r.name, pos+i, r.spec...); err != nil {
				err = fmt.Errorf("%s: add rule %s: %w", f.plan.binary, r, err)
			}
		}
	}
	if err != nil {
		return errors.Join(err, f.dropSelection(hosts, ports))
	}
	return nil
}

// dropSelection deletes host rules from Chain (those present) and the
// ports chain they jump to; a chain that cannot be deleted stays among
// the chains created.
func (f *family) dropSelection(hosts []rule, ports string) error {
	var errs []error
	for _, r := range hosts {
		if err := f.ipt.Delete(r.table, r.name, r.spec...); err != nil && !isNotExist(err) {
			errs = append(errs, fmt.Errorf("%s: delete rule %s: %w", f.plan.binary, r, err))
		}
	}
	ref := chainRef{Table, ports}
	if ok, err := f.ipt.ChainExists(Table, ports); err == nil && ok {
		if err := deleteChains(f.ipt, f.plan.binary, []chainRef{ref}); err != nil {
			// Kept among the chains created: Remove tries again.
			return errors.Join(append(errs, err)...)
		}
	}
	f.created = slices.DeleteFunc(f.created, func(c chainRef) bool { return c == ref })
	return errors.Join(errs...)
}
