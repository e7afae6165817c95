package nfq_test

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/nfq"
)

// otherMark is a bit of another program's in the connection mark.
const otherMark = 0x1

// TestConnMarksCleared: a live connection through the router whose
// conntrack mark has all of tcpchaos's bits (quiet, ending, final, dark:
// what a run leaves when it stops, or is killed, mid-connection) loses
// them, and keeps another program's bit, when Install puts the next
// run's rules in (a killed run's leftovers), when Remove has taken the
// rules out, and in Cleanup. IPv4, IPv6, and a connection in conntrack
// zone 5 (found by its zone).
func TestConnMarksCleared(t *testing.T) {
	for _, c := range []struct {
		name      string
		installed bool                          // the bits are set under an installed interception
		clear     func(*nfq.Interception) error // then this clears them; nil: Install does
	}{
		{"install", false, nil},
		{"remove", true, (*nfq.Interception).Remove},
		{"cleanup", true, func(*nfq.Interception) error { return nfq.Cleanup() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, f := range []struct {
				name string
				v6   bool
				zone uint16
			}{{"ipv4", false, 0}, {"ipv6", true, 0}, {"ipv4-zone", false, 5}} {
				t.Run(f.name, func(t *testing.T) {
					tp := netlabtest.NewTopology(t)
					if f.zone != 0 {
						tp.Router.Run(t, "iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "-m", "multiport", "--ports", fmt.Sprint(serverPort),
							"-j", "CT", "--zone", fmt.Sprint(f.zone))
					}
					netlabtest.Serve(t, tp.Server.Listen(t, "tcp", serverAddr(tp, f.v6)), 20*time.Second, func(c net.Conn) error {
						_, err := io.Copy(c, c)
						return err
					})
					var in *nfq.Interception
					if c.installed {
						in = installQuiet(t, tp)
					}
					conn := dialServer(t, tp, f.v6)
					markConn(t, tp, f.v6, conn)
					if got := connMark(t, tp, f.v6, f.zone, conn); got != nfq.ConnMarks|otherMark {
						t.Fatalf("mark before %s: %#x, want %#x", c.name, got, nfq.ConnMarks|otherMark)
					}
					if in == nil {
						installQuiet(t, tp)
					} else if err := tp.Router.Do(func() error { return c.clear(in) }); err != nil {
						t.Fatal(err)
					}
					if got := connMark(t, tp, f.v6, f.zone, conn); got != otherMark {
						t.Errorf("mark after %s: %#x, want %#x (tcpchaos's bits cleared, the other kept)", c.name, got, otherMark)
					}
					if err := echoOnce(conn, "after", 5*time.Second); err != nil {
						t.Error(err)
					}
				})
			}
		})
	}
}

// installQuiet installs the interception of serverPort with quiet
// connections in the router; t.Cleanup removes it.
func installQuiet(t *testing.T, tp *netlabtest.Topology) *nfq.Interception {
	t.Helper()
	var in *nfq.Interception
	err := tp.Router.Do(func() (err error) {
		in, err = nfq.Install(nfq.Intercept{Ports: []uint16{serverPort}, Queue: queueNum}, nfq.InstallOptions{Quiet: true})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tp.Router.Do(in.Remove); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	return in
}

// markConn sets tcpchaos's bits and otherMark in the connection mark of
// conn at the router, with a CONNMARK rule of the test's own ahead of
// tcpchaos's that one echo crosses; the rule is gone when it returns.
func markConn(t *testing.T, tp *netlabtest.Topology, v6 bool, conn net.Conn) {
	t.Helper()
	binary := "iptables"
	if v6 {
		binary = "ip6tables"
	}
	bits := fmt.Sprintf("%#x/%#x", nfq.ConnMarks|otherMark, nfq.ConnMarks|otherMark)
	rule := []string{"FORWARD", "-p", "tcp", "-m", "multiport", "--ports", fmt.Sprint(serverPort), "-j", "CONNMARK", "--set-xmark", bits}
	tp.Router.Run(t, binary, append([]string{"-t", "mangle", "-I"}, rule...)...)
	err := echoOnce(conn, "mark", 5*time.Second)
	tp.Router.Run(t, binary, append([]string{"-t", "mangle", "-D"}, rule...)...)
	if err != nil {
		t.Fatal(err)
	}
}

// connMark returns the conntrack mark at the router of the connection of
// conn, in conntrack zone zone, listed through vishvananda/netlink.
func connMark(t *testing.T, tp *netlabtest.Topology, v6 bool, zone uint16, conn net.Conn) uint32 {
	t.Helper()
	family := vnl.InetFamily(unix.AF_INET)
	if v6 {
		family = unix.AF_INET6
	}
	port := uint16(conn.LocalAddr().(*net.TCPAddr).Port)
	var marks []uint32
	err := tp.Router.Do(func() error {
		flows, err := vnl.ConntrackTableList(vnl.ConntrackTable, family)
		for _, f := range flows {
			if f.Forward.Protocol == unix.IPPROTO_TCP && f.Forward.SrcPort == port && f.Forward.DstPort == serverPort && f.Zone == zone {
				marks = append(marks, f.Mark)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 1 {
		t.Fatalf("conntrack entries of the connection from port %d in zone %d: marks %#x, want one entry", port, zone, marks)
	}
	return marks[0]
}
