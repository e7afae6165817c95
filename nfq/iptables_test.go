package nfq

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
)

// render lists a plan as "iptables -S" would show it after Install.
func render(plans []familyPlan) map[string][]string {
	out := make(map[string][]string)
	for _, p := range plans {
		var lines []string
		for _, c := range p.chains {
			lines = append(lines, "-N "+c.String())
		}
		for _, j := range p.jumps {
			lines = append(lines, "-I "+j.String())
		}
		for _, r := range p.rules {
			lines = append(lines, "-A "+r.String())
		}
		out[p.binary] = lines
	}
	return out
}

var (
	v4net = netip.MustParsePrefix("198.19.2.0/24")
	v6net = netip.MustParsePrefix("fd00:2::/64")
)

const chains = "-N TCPCHAOS\n-N TCPCHAOS-PORTS\n-N TCPCHAOS-QUEUE\n"

func TestPlan(t *testing.T) {
	many := make([]uint16, 16)
	for i := range many {
		many[i] = uint16(9000 + i)
	}
	for _, tc := range []struct {
		name string
		cfg  Intercept
		opts InstallOptions
		want map[string]string // by binary; absent: family untouched
	}{{
		name: "forward, every port and host",
		cfg:  Intercept{Queue: 100},
		want: map[string]string{
			"iptables": chains + `-I FORWARD -p tcp -j TCPCHAOS
-A TCPCHAOS -m mark --mark 0x74636301 -j RETURN
-A TCPCHAOS -j TCPCHAOS-PORTS
-A TCPCHAOS-PORTS -j TCPCHAOS-QUEUE
-A TCPCHAOS-QUEUE -j NFQUEUE --queue-num 100 --queue-bypass`,
			"ip6tables": chains + `-I FORWARD -p tcp -j TCPCHAOS
-A TCPCHAOS -m mark --mark 0x74636301 -j RETURN
-A TCPCHAOS -j TCPCHAOS-PORTS
-A TCPCHAOS-PORTS -j TCPCHAOS-QUEUE
-A TCPCHAOS-QUEUE -j NFQUEUE --queue-num 100 --queue-bypass`,
		},
	}, {
		name: "local, ports, IPv4 hosts only, balanced",
		cfg:  Intercept{Mode: Local, Ports: []uint16{8080, 5432}, Hosts: []netip.Prefix{v4net, netip.MustParsePrefix("198.18.1.7/24")}, Queue: 7, Queues: 3},
		want: map[string]string{
			"iptables": chains + `-I OUTPUT -p tcp -j TCPCHAOS
-I INPUT ! -i lo -p tcp -j TCPCHAOS
-A TCPCHAOS -m mark --mark 0x74636301 -j RETURN
-A TCPCHAOS -s 198.19.2.0/24 -j TCPCHAOS-PORTS
-A TCPCHAOS -d 198.19.2.0/24 -j TCPCHAOS-PORTS
-A TCPCHAOS -s 198.18.1.0/24 -j TCPCHAOS-PORTS
-A TCPCHAOS -d 198.18.1.0/24 -j TCPCHAOS-PORTS
-A TCPCHAOS-PORTS -p tcp -m multiport --ports 8080,5432 -j TCPCHAOS-QUEUE
-A TCPCHAOS-QUEUE -j NFQUEUE --queue-balance 7:9 --queue-bypass`,
		},
	}, {
		name: "forward, quiet",
		cfg:  Intercept{Ports: []uint16{8080}, Hosts: []netip.Prefix{v4net}, Queue: 100},
		opts: InstallOptions{Quiet: true},
		want: map[string]string{
			"iptables": chains + `-N -t filter TCPCHAOS
-I FORWARD -p tcp -j TCPCHAOS
-I -t filter FORWARD -m mark --mark 0x2000000/0x2000000 -j TCPCHAOS
-A TCPCHAOS -p tcp --tcp-flags SYN,FIN,RST NONE -m connmark --mark 0x8000000/0x8000000 -j RETURN
-A TCPCHAOS -m mark --mark 0x74636301 -j RETURN
-A TCPCHAOS -s 198.19.2.0/24 -j TCPCHAOS-PORTS
-A TCPCHAOS -d 198.19.2.0/24 -j TCPCHAOS-PORTS
-A TCPCHAOS-PORTS -p tcp -m multiport --ports 8080 -j TCPCHAOS-QUEUE
-A TCPCHAOS-QUEUE -p tcp --tcp-flags SYN SYN -j CONNMARK --set-xmark 0x0/0x1c000000
-A TCPCHAOS-QUEUE -p tcp --tcp-flags RST RST -j CONNMARK --set-xmark 0x14000000/0x1c000000
-A TCPCHAOS-QUEUE -p tcp --tcp-flags FIN FIN -m connmark --mark 0x4000000/0x4000000 -j CONNMARK --set-xmark 0x10000000/0x18000000
-A TCPCHAOS-QUEUE -p tcp --tcp-flags FIN FIN -j CONNMARK --set-xmark 0x4000000/0xc000000
-A TCPCHAOS-QUEUE -j NFQUEUE --queue-num 100 --queue-bypass
-A -t filter TCPCHAOS -m connmark ! --mark 0x4000000/0x4000000 -j CONNMARK --save-mark --nfmask 0x8000000 --ctmask 0x8000000
-A -t filter TCPCHAOS -p tcp --tcp-flags FIN FIN -m connmark --mark 0x4000000/0x14000000 -j CONNMARK --save-mark --nfmask 0x8000000 --ctmask 0x8000000
-A -t filter TCPCHAOS -m connmark --mark 0x4000000/0x4000000 -m mark --mark 0x0/0x8000000 -j CONNMARK --set-xmark 0x0/0x8000000
-A -t filter TCPCHAOS -j MARK --set-xmark 0x0/0xa000000`,
		},
	}, {
		name: "forward, quiet, blackhole",
		cfg:  Intercept{Ports: []uint16{8080}, Hosts: []netip.Prefix{v6net}, Queue: 100},
		opts: InstallOptions{Quiet: true, Blackhole: true},
		want: map[string]string{
			"ip6tables": chains + `-N -t filter TCPCHAOS
-I FORWARD -p tcp -j TCPCHAOS
-I -t filter FORWARD -m mark --mark 0x2000000/0x2000000 -j TCPCHAOS
-A TCPCHAOS -p tcp --tcp-flags RST NONE -m connmark --mark 0x400000/0x400000 -m conntrack --ctdir ORIGINAL -j DROP
-A TCPCHAOS -p tcp --tcp-flags RST NONE -m connmark --mark 0x200000/0x200000 -m conntrack --ctdir REPLY -j DROP
-A TCPCHAOS -p tcp --tcp-flags SYN,FIN,RST NONE -m connmark --mark 0x8000000/0x8000000 -j RETURN
-A TCPCHAOS -m mark --mark 0x74636301 -j RETURN
-A TCPCHAOS -s fd00:2::/64 -j TCPCHAOS-PORTS
-A TCPCHAOS -d fd00:2::/64 -j TCPCHAOS-PORTS
-A TCPCHAOS-PORTS -p tcp -m multiport --ports 8080 -j TCPCHAOS-QUEUE
-A TCPCHAOS-QUEUE -p tcp --tcp-flags SYN SYN -j CONNMARK --set-xmark 0x0/0x1c000000
-A TCPCHAOS-QUEUE -p tcp --tcp-flags RST RST -j CONNMARK --set-xmark 0x14000000/0x1c000000
-A TCPCHAOS-QUEUE -p tcp --tcp-flags FIN FIN -m connmark --mark 0x4000000/0x4000000 -j CONNMARK --set-xmark 0x10000000/0x18000000
-A TCPCHAOS-QUEUE -p tcp --tcp-flags FIN FIN -j CONNMARK --set-xmark 0x4000000/0xc000000
-A TCPCHAOS-QUEUE -j NFQUEUE --queue-num 100 --queue-bypass
-A -t filter TCPCHAOS -m connmark ! --mark 0x4000000/0x4000000 -j CONNMARK --save-mark --nfmask 0x8000000 --ctmask 0x8000000
-A -t filter TCPCHAOS -p tcp --tcp-flags FIN FIN -m connmark --mark 0x4000000/0x14000000 -j CONNMARK --save-mark --nfmask 0x8000000 --ctmask 0x8000000
-A -t filter TCPCHAOS -m connmark --mark 0x4000000/0x4000000 -m mark --mark 0x0/0x8000000 -j CONNMARK --set-xmark 0x0/0x8000000
-A -t filter TCPCHAOS -m mark --mark 0x1000000/0x1000000 -m conntrack --ctdir ORIGINAL -j CONNMARK --set-xmark 0x400000/0x400000
-A -t filter TCPCHAOS -m mark --mark 0x1000000/0x1000000 -m conntrack --ctdir REPLY -j CONNMARK --set-xmark 0x200000/0x200000
-A -t filter TCPCHAOS -m mark --mark 0x800000/0x800000 -m conntrack --ctdir ORIGINAL -j CONNMARK --set-xmark 0x200000/0x200000
-A -t filter TCPCHAOS -m mark --mark 0x800000/0x800000 -m conntrack --ctdir REPLY -j CONNMARK --set-xmark 0x400000/0x400000
-A -t filter TCPCHAOS -m mark --mark 0x1000000/0x1000000 -j DROP
-A -t filter TCPCHAOS -j MARK --set-xmark 0x0/0xb800000`,
		},
	}, {
		name: "IPv6 hosts only, 16 ports in two multiport rules",
		cfg:  Intercept{Ports: many, Hosts: []netip.Prefix{v6net}, Queue: 100, Queues: 1},
		want: map[string]string{
			"ip6tables": chains + `-I FORWARD -p tcp -j TCPCHAOS
-A TCPCHAOS -m mark --mark 0x74636301 -j RETURN
-A TCPCHAOS -s fd00:2::/64 -j TCPCHAOS-PORTS
-A TCPCHAOS -d fd00:2::/64 -j TCPCHAOS-PORTS
-A TCPCHAOS-PORTS -p tcp -m multiport --ports 9000,9001,9002,9003,9004,9005,9006,9007,9008,9009,9010,9011,9012,9013,9014 -j TCPCHAOS-QUEUE
-A TCPCHAOS-PORTS -p tcp -m multiport --ports 9015 -j TCPCHAOS-QUEUE
-A TCPCHAOS-QUEUE -j NFQUEUE --queue-num 100 --queue-bypass`,
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			plans, err := plan(tc.cfg, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := render(plans)
			if len(got) != len(tc.want) {
				t.Errorf("plan covers %d families, want %d: %v", len(got), len(tc.want), got)
			}
			for bin, want := range tc.want {
				if g := strings.Join(got[bin], "\n"); g != want {
					t.Errorf("%s rules:\n%s\nwant:\n%s", bin, g, want)
				}
			}
			for _, p := range plans {
				if !slices.Contains(p.rules[p.queueRule].spec, "NFQUEUE") {
					t.Errorf("%s: queueRule %d is %s, not the NFQUEUE rule", p.binary, p.queueRule, p.rules[p.queueRule])
				}
			}
		})
	}
	if _, err := plan(Intercept{Queue: 65535, Queues: 2}, InstallOptions{}); err == nil || !strings.Contains(err.Error(), "65536") {
		t.Errorf("plan with queues 65535..65536 = %v, want an error naming 65536", err)
	}
}

// install runs Install in ns and removes the rules when the test ends.
func install(t *testing.T, ns *netlabtest.NS, cfg Intercept, opts InstallOptions) *Interception {
	t.Helper()
	var in *Interception
	if err := ns.Do(func() (err error) { in, err = Install(cfg, opts); return err }); err != nil {
		t.Fatalf("Install: %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Do(in.Remove); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	return in
}

// mangleRules returns "BINARY -t mangle -S" without the policy lines.
func mangleRules(t *testing.T, ns *netlabtest.NS, binary string) string {
	t.Helper()
	return tableRules(t, ns, binary, Table)
}

// tableRules returns "BINARY -t TABLE -S" without the policy lines.
func tableRules(t *testing.T, ns *netlabtest.NS, binary, table string) string {
	t.Helper()
	var kept []string
	for line := range strings.Lines(ns.Run(t, binary, "-t", table, "-S")) {
		if !strings.HasPrefix(line, "-P ") {
			kept = append(kept, strings.TrimSpace(line))
		}
	}
	return strings.Join(kept, "\n")
}

var counterField = regexp.MustCompile(`\[\d+:\d+\]`)

// saved returns "BINARY-save" of every table without comments and counters.
func saved(t *testing.T, ns *netlabtest.NS, binary string) string {
	t.Helper()
	var kept []string
	for line := range strings.Lines(ns.Run(t, binary+"-save")) {
		if !strings.HasPrefix(line, "#") {
			kept = append(kept, counterField.ReplaceAllString(line, ""))
		}
	}
	return strings.Join(kept, "")
}

// foreignRules adds rules of another program to both families, so that the
// tests see them survive untouched and in order.
func foreignRules(t *testing.T, ns *netlabtest.NS) {
	t.Helper()
	for _, bin := range []string{"iptables", "ip6tables"} {
		ns.Run(t, bin, "-t", "mangle", "-A", "FORWARD", "-p", "udp", "-j", "ACCEPT")
		ns.Run(t, bin, "-t", "mangle", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
		ns.Run(t, bin, "-t", "mangle", "-N", "OTHER")
		ns.Run(t, bin, "-t", "mangle", "-A", "OUTPUT", "-j", "OTHER")
		ns.Run(t, bin, "-t", "filter", "-A", "FORWARD", "-p", "tcp", "--dport", "25", "-j", "DROP")
	}
}

func TestInstallForwardRules(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "router")
	install(t, ns, Intercept{
		Ports: []uint16{8080, 5432},
		Hosts: []netip.Prefix{v4net, v6net},
		Queue: 100, Queues: 2,
	}, InstallOptions{})
	for bin, host := range map[string]string{"iptables": "198.19.2.0/24", "ip6tables": "fd00:2::/64"} {
		want := chains + `-A FORWARD -p tcp -j TCPCHAOS
-A TCPCHAOS -m mark --mark 0x74636301 -j RETURN
-A TCPCHAOS -s ` + host + ` -j TCPCHAOS-PORTS
-A TCPCHAOS -d ` + host + ` -j TCPCHAOS-PORTS
-A TCPCHAOS-PORTS -p tcp -m multiport --ports 8080,5432 -j TCPCHAOS-QUEUE
-A TCPCHAOS-QUEUE -j NFQUEUE --queue-balance 100:101 --queue-bypass`
		if got := mangleRules(t, ns, bin); got != want {
			t.Errorf("%s -t mangle -S:\n%s\nwant:\n%s", bin, got, want)
		}
	}
}

func TestInstallLocalRules(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "host")
	install(t, ns, Intercept{Mode: Local, Ports: []uint16{8080}, Queue: 5}, InstallOptions{})
	for _, bin := range []string{"iptables", "ip6tables"} {
		want := chains + `-A INPUT ! -i lo -p tcp -j TCPCHAOS
-A OUTPUT -p tcp -j TCPCHAOS
-A TCPCHAOS -m mark --mark 0x74636301 -j RETURN
-A TCPCHAOS -j TCPCHAOS-PORTS
-A TCPCHAOS-PORTS -p tcp -m multiport --ports 8080 -j TCPCHAOS-QUEUE
-A TCPCHAOS-QUEUE -j NFQUEUE --queue-num 5 --queue-bypass`
		if got := mangleRules(t, ns, bin); got != want {
			t.Errorf("%s -t mangle -S:\n%s\nwant:\n%s", bin, got, want)
		}
		// For an exact count below, the test lets only SYNs and FINs
		// reach the queue rule (a connection's number of ACKs varies).
		ns.Run(t, bin, "-w", "-t", "mangle", "-I", chainQueue, "-p", "tcp", "--tcp-flags", "SYN,FIN,RST", "NONE", "-j", "RETURN")
	}
	// A loopback connection is queued once per packet (on output, not
	// again on input): SYN, SYN-ACK and the two FINs.
	for _, addr := range []string{"127.0.0.1:8080", "[::1]:8080"} {
		bin := "iptables"
		if strings.HasPrefix(addr, "[") {
			bin = "ip6tables"
		}
		before := queued(t, ns, bin)
		echoOnce(t, ns, ns, addr)
		if got := queued(t, ns, bin) - before; got != 4 {
			t.Errorf("%s: loopback connection queued %d packets, want 4 (SYN, SYN-ACK, FIN, FIN)", addr, got)
		}
	}
}

// TestInstallQuietRules checks that the kernel takes the quiet
// connections rules as planned, in both tables and both families.
func TestInstallQuietRules(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "host")
	install(t, ns, Intercept{Mode: Local, Ports: []uint16{8080}, Queue: 5}, InstallOptions{Quiet: true})
	wantInstalled(t, ns, chains+`-A INPUT ! -i lo -p tcp -j TCPCHAOS
-A OUTPUT -p tcp -j TCPCHAOS
-A TCPCHAOS -p tcp -m tcp --tcp-flags FIN,SYN,RST NONE -m connmark --mark 0x8000000/0x8000000 -j RETURN
-A TCPCHAOS -m mark --mark 0x74636301 -j RETURN
-A TCPCHAOS -j TCPCHAOS-PORTS
-A TCPCHAOS-PORTS -p tcp -m multiport --ports 8080 -j TCPCHAOS-QUEUE
-A TCPCHAOS-QUEUE -p tcp -m tcp --tcp-flags SYN SYN -j CONNMARK --set-xmark 0x0/0x1c000000
-A TCPCHAOS-QUEUE -p tcp -m tcp --tcp-flags RST RST -j CONNMARK --set-xmark 0x14000000/0x1c000000
-A TCPCHAOS-QUEUE -p tcp -m tcp --tcp-flags FIN FIN -m connmark --mark 0x4000000/0x4000000 -j CONNMARK --set-xmark 0x10000000/0x18000000
-A TCPCHAOS-QUEUE -p tcp -m tcp --tcp-flags FIN FIN -j CONNMARK --set-xmark 0x4000000/0xc000000
-A TCPCHAOS-QUEUE -j NFQUEUE --queue-num 5 --queue-bypass`, `-N TCPCHAOS
-A INPUT ! -i lo -m mark --mark 0x2000000/0x2000000 -j TCPCHAOS
-A OUTPUT -m mark --mark 0x2000000/0x2000000 -j TCPCHAOS
-A TCPCHAOS -m connmark ! --mark 0x4000000/0x4000000 -j CONNMARK --save-mark --nfmask 0x8000000 --ctmask 0x8000000
-A TCPCHAOS -p tcp -m tcp --tcp-flags FIN FIN -m connmark --mark 0x4000000/0x14000000 -j CONNMARK --save-mark --nfmask 0x8000000 --ctmask 0x8000000
-A TCPCHAOS -m connmark --mark 0x4000000/0x4000000 -m mark --mark 0x0/0x8000000 -j CONNMARK --set-xmark 0x0/0x8000000
-A TCPCHAOS -j MARK --set-xmark 0x0/0xa000000`)
}

// wantInstalled checks the mangle and filter rules of ns, the same in
// IPv4 and IPv6.
func wantInstalled(t *testing.T, ns *netlabtest.NS, mangle, filter string) {
	t.Helper()
	for _, bin := range []string{"iptables", "ip6tables"} {
		if got := mangleRules(t, ns, bin); got != mangle {
			t.Errorf("%s -t mangle -S:\n%s\nwant:\n%s", bin, got, mangle)
		}
		if got := tableRules(t, ns, bin, FilterTable); got != filter {
			t.Errorf("%s -t filter -S:\n%s\nwant:\n%s", bin, got, filter)
		}
	}
}

// TestInstallBlackholeRules checks that the kernel takes the blackhole
// rules in local mode, in both tables and both families, and that
// DarkDrops reads their counters (zero: nothing is dark).
func TestInstallBlackholeRules(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "host")
	in := install(t, ns, Intercept{Mode: Local, Ports: []uint16{8080}, Queue: 5}, InstallOptions{Blackhole: true})
	wantInstalled(t, ns, chains+`-A INPUT ! -i lo -p tcp -j TCPCHAOS
-A OUTPUT -p tcp -j TCPCHAOS
-A TCPCHAOS -p tcp -m tcp --tcp-flags RST NONE -m connmark --mark 0x400000/0x400000 -m conntrack --ctdir ORIGINAL -j DROP
-A TCPCHAOS -p tcp -m tcp --tcp-flags RST NONE -m connmark --mark 0x200000/0x200000 -m conntrack --ctdir REPLY -j DROP
-A TCPCHAOS -m mark --mark 0x74636301 -j RETURN
-A TCPCHAOS -j TCPCHAOS-PORTS
-A TCPCHAOS-PORTS -p tcp -m multiport --ports 8080 -j TCPCHAOS-QUEUE
-A TCPCHAOS-QUEUE -j NFQUEUE --queue-num 5 --queue-bypass`, `-N TCPCHAOS
-A INPUT ! -i lo -m mark --mark 0x2000000/0x2000000 -j TCPCHAOS
-A OUTPUT -m mark --mark 0x2000000/0x2000000 -j TCPCHAOS
-A TCPCHAOS -m mark --mark 0x1000000/0x1000000 -m conntrack --ctdir ORIGINAL -j CONNMARK --set-xmark 0x400000/0x400000
-A TCPCHAOS -m mark --mark 0x1000000/0x1000000 -m conntrack --ctdir REPLY -j CONNMARK --set-xmark 0x200000/0x200000
-A TCPCHAOS -m mark --mark 0x800000/0x800000 -m conntrack --ctdir ORIGINAL -j CONNMARK --set-xmark 0x200000/0x200000
-A TCPCHAOS -m mark --mark 0x800000/0x800000 -m conntrack --ctdir REPLY -j CONNMARK --set-xmark 0x400000/0x400000
-A TCPCHAOS -m mark --mark 0x1000000/0x1000000 -j DROP
-A TCPCHAOS -j MARK --set-xmark 0x0/0x3800000`)
	var ds DarkStats
	if err := ns.Do(func() (err error) { ds, err = in.DarkDrops(); return err }); err != nil || ds != (DarkStats{}) {
		t.Errorf("DarkDrops = %+v, %v; want zero, no error", ds, err)
	}
}

// queued returns the packet counter of the NFQUEUE rule.
func queued(t *testing.T, ns *netlabtest.NS, binary string) uint64 {
	t.Helper()
	out := ns.Run(t, binary+"-save", "-c", "-t", Table)
	for line := range strings.Lines(out) {
		if strings.Contains(line, "-j NFQUEUE") {
			m := regexp.MustCompile(`^\[(\d+):\d+\]`).FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("%s-save -c: no counters in %q", binary, line)
			}
			n, err := strconv.ParseUint(m[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("%s-save -c: no NFQUEUE rule:\n%s", binary, out)
	return 0
}

// echoOnce runs one whole connection from client to a listener on addr in
// server: connect, 5 bytes echoed, half-close, and the server's close seen,
// so that both FINs have crossed when it returns.
func echoOnce(t *testing.T, client, server *netlabtest.NS, addr string) {
	t.Helper()
	ln := server.Listen(t, "tcp", addr)
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		_, err = io.Copy(c, c)
		served <- errors.Join(err, c.Close())
	}()
	conn, err := client.Dial("tcp", addr, 5*time.Second)
	if err != nil {
		ln.Close()
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatalf("write to %s: %v", addr, err)
	}
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("half-close to %s: %v", addr, err)
	}
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "hello" {
		t.Errorf("echo from %s = %q, %v; want \"hello\" then EOF", addr, got, err)
	}
	if err := <-served; err != nil {
		t.Errorf("server at %s: %v", addr, err)
	}
	ln.Close()
}

// TestBypass: with nothing bound to the queue, --queue-bypass lets the
// queued packets through.
func TestBypass(t *testing.T) {
	tp := netlabtest.NewTopology(t)
	install(t, tp.Router, Intercept{Ports: []uint16{8080}, Queue: 100}, InstallOptions{})
	for bin, server := range map[string]netip.Addr{"iptables": tp.Server4, "ip6tables": tp.Server6} {
		before := queued(t, tp.Router, bin)
		echoOnce(t, tp.Client, tp.Server, netip.AddrPortFrom(server, 8080).String())
		if n := queued(t, tp.Router, bin) - before; n < 8 {
			t.Errorf("%s: one connection queued %d packets, want every packet (at least 8)", bin, n)
		}
		// Another port is not intercepted.
		before = queued(t, tp.Router, bin)
		echoOnce(t, tp.Client, tp.Server, netip.AddrPortFrom(server, 9090).String())
		if n := queued(t, tp.Router, bin) - before; n != 0 {
			t.Errorf("%s: a connection to port 9090 queued %d packets, want 0", bin, n)
		}
	}
}

func TestInstallHostsOfOneFamily(t *testing.T) {
	tp := netlabtest.NewTopology(t)
	install(t, tp.Router, Intercept{Hosts: []netip.Prefix{v4net}, Queue: 100}, InstallOptions{})
	if got := mangleRules(t, tp.Router, "ip6tables"); got != "" {
		t.Errorf("IPv4 hosts only, yet ip6tables has rules:\n%s", got)
	}
	before := queued(t, tp.Router, "iptables")
	echoOnce(t, tp.Client, tp.Server, netip.AddrPortFrom(tp.Server4, 8080).String())
	echoOnce(t, tp.Client, tp.Server, netip.AddrPortFrom(tp.Server6, 8080).String())
	if queued(t, tp.Router, "iptables") == before {
		t.Error("an IPv4 connection to a listed host was not queued")
	}
}

func TestRemoveLeavesNothing(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "host")
	foreignRules(t, ns)
	before := map[string]string{"iptables": saved(t, ns, "iptables"), "ip6tables": saved(t, ns, "ip6tables")}
	var in *Interception
	if err := ns.Do(func() (err error) {
		in, err = Install(Intercept{Mode: Local, Ports: []uint16{8080}, Queue: 100}, InstallOptions{Quiet: true})
		return err
	}); err != nil {
		t.Fatalf("Install: %v", err)
	}
	for bin, b := range before {
		if saved(t, ns, bin) == b {
			t.Fatalf("%s: Install changed nothing", bin)
		}
	}
	for range 2 { // a second Remove does nothing
		if err := ns.Do(in.Remove); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		for bin, b := range before {
			if got := saved(t, ns, bin); got != b {
				t.Errorf("%s-save after Remove:\n%s\nwant as before Install:\n%s", bin, got, b)
			}
		}
	}
}

func TestCleanup(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "host")
	if err := ns.Do(Cleanup); err != nil {
		t.Fatalf("Cleanup with nothing installed: %v", err)
	}
	foreignRules(t, ns)
	before := map[string]string{"iptables": saved(t, ns, "iptables"), "ip6tables": saved(t, ns, "ip6tables")}
	// A killed run: rules installed and never removed, plus a foreign rule
	// inserted in front of the jump and a second jump, so that cleanup has
	// to delete rules in the middle of a chain by number.
	if err := ns.Do(func() error {
		_, err := Install(Intercept{Mode: Local, Queue: 100}, InstallOptions{Quiet: true})
		return err
	}); err != nil {
		t.Fatalf("Install: %v", err)
	}
	for _, bin := range []string{"iptables", "ip6tables"} {
		ns.Run(t, bin, "-t", Table, "-I", "INPUT", "1", "-p", "sctp", "-j", "ACCEPT")
		ns.Run(t, bin, "-t", Table, "-A", "INPUT", "-p", "tcp", "-j", Chain)
		before[bin] = strings.Replace(before[bin], "-A INPUT", "-A INPUT -p sctp -j ACCEPT\n-A INPUT", 1)
	}
	for i := range 2 {
		if err := ns.Do(Cleanup); err != nil {
			t.Fatalf("Cleanup #%d: %v", i+1, err)
		}
		for bin, b := range before {
			if got := saved(t, ns, bin); got != b {
				t.Errorf("%s-save after Cleanup #%d:\n%s\nwant:\n%s", bin, i+1, got, b)
			}
		}
	}
}

func TestInstallRefusesLeftover(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "host")
	ns.Run(t, "ip6tables", "-t", Table, "-N", chainQueue) // a killed run's remains, IPv6 only
	before4, before6 := saved(t, ns, "iptables"), saved(t, ns, "ip6tables")
	err := ns.Do(func() error {
		_, err := Install(Intercept{Queue: 100}, InstallOptions{})
		return err
	})
	if !errors.Is(err, ErrLeftover) || !strings.Contains(err.Error(), "tcpchaos cleanup") || !strings.Contains(err.Error(), chainQueue) {
		t.Fatalf("Install over a leftover chain = %v, want ErrLeftover naming %s and `tcpchaos cleanup`", err, chainQueue)
	}
	if saved(t, ns, "iptables") != before4 || saved(t, ns, "ip6tables") != before6 {
		t.Error("a refused Install changed the rules")
	}
}

// TestInstallRollsBack makes the last step of the second family fail (an
// ip6tables that refuses NFQUEUE, as a kernel without the target does):
// everything added before, in both families, must be gone.
func TestInstallRollsBack(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "host")
	foreignRules(t, ns)
	before4, before6 := saved(t, ns, "iptables"), saved(t, ns, "ip6tables")
	ip6t, err := exec.LookPath("ip6tables")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "#!/bin/sh\nfor a in \"$@\"; do\n\tif [ \"$a\" = NFQUEUE ]; then echo 'Extension NFQUEUE revision 0 not supported, missing kernel module?' >&2; exit 2; fi\ndone\nexec " + ip6t + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "ip6tables"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	err = ns.Do(func() error {
		_, err := Install(Intercept{Ports: []uint16{8080}, Queue: 100}, InstallOptions{})
		return err
	})
	if !errors.Is(err, ErrNoQueueTarget) || !strings.Contains(err.Error(), "ip6tables") {
		t.Fatalf("Install with NFQUEUE refused = %v, want ErrNoQueueTarget naming ip6tables", err)
	}
	if got := saved(t, ns, "iptables"); got != before4 {
		t.Errorf("iptables-save after a failed Install:\n%s\nwant:\n%s", got, before4)
	}
	if got := saved(t, ns, "ip6tables"); got != before6 {
		t.Errorf("ip6tables-save after a failed Install:\n%s\nwant:\n%s", got, before6)
	}
}

func TestMissingBinary(t *testing.T) {
	ns := netlabtest.NewNamespace(t, "host")
	t.Setenv("PATH", t.TempDir())
	err := ns.Do(func() error {
		_, err := Install(Intercept{Queue: 100}, InstallOptions{})
		return err
	})
	if !errors.Is(err, ErrNoBinary) || !strings.Contains(err.Error(), "iptables") {
		t.Errorf("Install without iptables in PATH = %v, want ErrNoBinary naming iptables", err)
	}
	if err := ns.Do(Cleanup); err != nil {
		t.Errorf("Cleanup without iptables in PATH = %v, want nil (nothing can be installed)", err)
	}
}
