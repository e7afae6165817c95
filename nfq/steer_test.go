//go:build linux

package nfq

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
)

// TestUpdateAndBypass: a reload's changes of the interception, as the
// kernel holds them: the new ports chain and host rules come in, the old
// ones go, and the quiet bypass goes and comes back.
func TestUpdateAndBypass(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "router")
	in := install(t, ns, Intercept{Ports: []uint16{8080}, Hosts: []netip.Prefix{v4net, v6net}, Queue: 7}, InstallOptions{Quiet: true})
	const bypass = "-A TCPCHAOS -p tcp -m tcp --tcp-flags FIN,SYN,RST NONE -m connmark --mark 0x8000000/0x8000000 -j RETURN\n"
	const queue = `-A TCPCHAOS-QUEUE -p tcp -m tcp --tcp-flags SYN SYN -j CONNMARK --set-xmark 0x0/0x1c000000
-A TCPCHAOS-QUEUE -p tcp -m tcp --tcp-flags RST RST -j CONNMARK --set-xmark 0x14000000/0x1c000000
-A TCPCHAOS-QUEUE -p tcp -m tcp --tcp-flags FIN FIN -m connmark --mark 0x4000000/0x4000000 -j CONNMARK --set-xmark 0x10000000/0x18000000
-A TCPCHAOS-QUEUE -p tcp -m tcp --tcp-flags FIN FIN -j CONNMARK --set-xmark 0x4000000/0xc000000
-A TCPCHAOS-QUEUE -j NFQUEUE --queue-num 7 --queue-bypass`
	check := func(step, withBypass, selection string) {
		t.Helper()
		for bin, host := range map[string]string{"iptables": "198.19.2.0/24", "ip6tables": "fd00:2::/64"} {
			want := "-A FORWARD -p tcp -j TCPCHAOS\n" + withBypass + "-A TCPCHAOS -m mark --mark 0x74636301 -j RETURN\n" +
				strings.ReplaceAll(selection, "HOST", host) + queue
			if got := ruleLines(t, ns, bin); got != sortedLines(want) {
				t.Errorf("%s: %s -t mangle -S rules (sorted):\n%s\nwant:\n%s", step, bin, got, sortedLines(want))
			}
			// In the entry chain, order matters.
			if got, want := entryLines(mangleRules(t, ns, bin)), entryLines(want); got != want {
				t.Errorf("%s: %s chain TCPCHAOS:\n%s\nwant:\n%s", step, bin, got, want)
			}
		}
	}
	if err := ns.Do(func() error {
		return in.Update(Intercept{Ports: []uint16{8080, 9090}, Hosts: []netip.Prefix{v4net, v6net}, Queue: 7})
	}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	check("new ports", bypass, `-A TCPCHAOS -s HOST -j TCPCHAOS-PORTS-1
-A TCPCHAOS -d HOST -j TCPCHAOS-PORTS-1
-A TCPCHAOS-PORTS-1 -p tcp -m multiport --ports 8080,9090 -j TCPCHAOS-QUEUE
`)
	if err := ns.Do(func() error { return in.SetBypass(false) }); err != nil {
		t.Fatalf("SetBypass(false): %v", err)
	}
	if err := ns.Do(func() error { return in.Update(Intercept{Hosts: []netip.Prefix{v4net, v6net}, Queue: 7}) }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	check("every port, no bypass", "", `-A TCPCHAOS -s HOST -j TCPCHAOS-PORTS-2
-A TCPCHAOS -d HOST -j TCPCHAOS-PORTS-2
-A TCPCHAOS-PORTS-2 -j TCPCHAOS-QUEUE
`)
	if err := ns.Do(func() error { return in.SetBypass(true) }); err != nil {
		t.Fatalf("SetBypass(true): %v", err)
	}
	check("bypass back", bypass, `-A TCPCHAOS -s HOST -j TCPCHAOS-PORTS-2
-A TCPCHAOS -d HOST -j TCPCHAOS-PORTS-2
-A TCPCHAOS-PORTS-2 -j TCPCHAOS-QUEUE
`)
	err := ns.Do(func() error { return in.Update(Intercept{Hosts: []netip.Prefix{v4net}, Queue: 7}) })
	if err == nil {
		t.Errorf("Update to IPv4 hosts only (no IPv6 interception) succeeded, want refused")
	}
	if err := ns.Do(in.Remove); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, bin := range []string{"iptables", "ip6tables"} {
		if got := mangleRules(t, ns, bin); strings.Contains(got, "TCPCHAOS") {
			t.Errorf("%s after Remove:\n%s", bin, got)
		}
	}
}

// ruleLines returns the rules (not the chains) of "BINARY -t mangle -S",
// sorted.
func ruleLines(t *testing.T, ns *netlabtest.NS, binary string) string {
	t.Helper()
	var rs []string
	for line := range strings.Lines(mangleRules(t, ns, binary)) {
		if strings.HasPrefix(line, "-A ") {
			rs = append(rs, strings.TrimSpace(line))
		}
	}
	return sortedLines(strings.Join(rs, "\n"))
}

// entryLines returns the rules of Chain, in order.
func entryLines(rules string) string {
	var rs []string
	for line := range strings.Lines(rules) {
		if strings.HasPrefix(line, "-A "+Chain+" ") {
			rs = append(rs, strings.TrimSpace(line))
		}
	}
	return strings.Join(rs, "\n")
}

func sortedLines(s string) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(ls)
	return strings.Join(ls, "\n")
}

// TestBypassNeedsQuietInstall: without quiet connections there is no
// bypass to put back.
func TestBypassNeedsQuietInstall(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "router")
	in := install(t, ns, Intercept{Ports: []uint16{8080}, Queue: 7}, InstallOptions{})
	if err := ns.Do(func() error { return in.SetBypass(false) }); err != nil {
		t.Errorf("SetBypass(false) without quiet: %v, want nothing done", err)
	}
	if err := ns.Do(func() error { return in.SetBypass(true) }); err == nil {
		t.Errorf("SetBypass(true) without quiet succeeded")
	}
}

// TestReloadKeepsTheDarkDropsFirst: with blackholes installed, a reload's
// new host rules and the quiet bypass put back come after the dark drops
// and in the same order as Install puts them.
func TestReloadKeepsTheDarkDropsFirst(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "router")
	in := install(t, ns, Intercept{Ports: []uint16{8080}, Hosts: []netip.Prefix{v4net}, Queue: 7}, InstallOptions{Quiet: true, Blackhole: true})
	if !in.Darkens() {
		t.Fatal("Darkens() = false after an install with Blackhole")
	}
	for _, step := range []func() error{
		func() error { return in.SetBypass(false) },
		func() error {
			return in.Update(Intercept{Ports: []uint16{9090}, Hosts: []netip.Prefix{v4net}, Queue: 7})
		},
		func() error { return in.SetBypass(true) },
	} {
		if err := ns.Do(step); err != nil {
			t.Fatal(err)
		}
	}
	want := `-A TCPCHAOS -p tcp -m tcp --tcp-flags RST NONE -m connmark --mark 0x400000/0x400000 -m conntrack --ctdir ORIGINAL -j DROP
-A TCPCHAOS -p tcp -m tcp --tcp-flags RST NONE -m connmark --mark 0x200000/0x200000 -m conntrack --ctdir REPLY -j DROP
-A TCPCHAOS -p tcp -m tcp --tcp-flags FIN,SYN,RST NONE -m connmark --mark 0x8000000/0x8000000 -j RETURN
-A TCPCHAOS -m mark --mark 0x74636301 -j RETURN
-A TCPCHAOS -s 198.19.2.0/24 -j TCPCHAOS-PORTS-1
-A TCPCHAOS -d 198.19.2.0/24 -j TCPCHAOS-PORTS-1`
	if got := entryLines(mangleRules(t, ns, "iptables")); got != want {
		t.Errorf("chain TCPCHAOS after the reload:\n%s\nwant:\n%s", got, want)
	}
}

// TestUpdateWithTheOldSelectionStuck: when the old ports chain cannot be
// removed (here a rule of someone else's jumps to it), the new selection is
// in force all the same, and the error says so (ErrOldSelectionLeft), so
// that a reload does not take the config as refused.
func TestUpdateWithTheOldSelectionStuck(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "router")
	in := install(t, ns, Intercept{Ports: []uint16{8080}, Queue: 7}, InstallOptions{})
	ns.Run(t, "iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "udp", "-j", chainPorts)
	err := ns.Do(func() error { return in.Update(Intercept{Ports: []uint16{9090}, Queue: 7}) })
	if !errors.Is(err, ErrOldSelectionLeft) {
		t.Fatalf("Update with the old ports chain referenced: %v, want ErrOldSelectionLeft", err)
	}
	if got := mangleRules(t, ns, "iptables"); !strings.Contains(got, "-A TCPCHAOS -j TCPCHAOS-PORTS-1\n") || strings.Contains(got, "-A TCPCHAOS -j TCPCHAOS-PORTS\n") {
		t.Errorf("after the Update, the entry chain does not jump to the new ports chain only:\n%s", got)
	}
	ns.Run(t, "iptables", "-t", "mangle", "-D", "PREROUTING", "-p", "udp", "-j", chainPorts)
	if err := ns.Do(in.Remove); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := mangleRules(t, ns, "iptables"); strings.Contains(got, "TCPCHAOS") {
		t.Errorf("after Remove, the old ports chain is left:\n%s", got)
	}
}
