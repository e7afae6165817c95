package netlabtest

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// echo serves one connection: it copies what it reads back until EOF.
func echo(t *testing.T, ln net.Listener) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
}

func TestTopologyEcho(t *testing.T) {
	tp := NewTopology(t)
	for _, tc := range []struct {
		name           string
		client, server netip.Addr
	}{
		{"ipv4", tp.Client4, tp.Server4},
		{"ipv6", tp.Client6, tp.Server6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const port = 8080
			server := netip.AddrPortFrom(tc.server, port)
			ln := tp.Server.Listen(t, "tcp", server.String())
			echo(t, ln)
			capC := tp.Router.Capture(t, tp.RouterClientIf, "tcp port 8080")
			capS := tp.Router.Capture(t, tp.RouterServerIf, "tcp port 8080")

			conn, err := tp.Client.Dial("tcp", server.String(), 5*time.Second)
			if err != nil {
				t.Fatalf("dial %s: %v", server, err)
			}
			defer conn.Close()
			if got := netip.MustParseAddrPort(conn.LocalAddr().String()).Addr(); got != tc.client {
				t.Errorf("client address = %s, want %s", got, tc.client)
			}
			if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write([]byte("ping\n")); err != nil {
				t.Fatalf("write: %v", err)
			}
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || line != "ping\n" {
				t.Fatalf("echo = %q, %v; want \"ping\\n\"", line, err)
			}
			if got := tp.Client.SocketStates(t, port)[statetrack.Established]; got != 1 {
				t.Errorf("client sockets ESTABLISHED on port %d = %d, want 1\n%s", port, got, tp.Client.SS(t))
			}
			if got := tp.Server.SocketStates(t, port); got[statetrack.Listen] != 1 || got[statetrack.Established] != 1 {
				t.Errorf("server socket states on port %d = %v, want one LISTEN and one ESTABLISHED", port, got)
			}

			// The same SYN crosses both router interfaces, data both ways.
			for _, c := range []*Capture{capC, capS} {
				isSyn := func(p Packet) bool {
					return p.Flags == statetrack.SYN && p.Src.Addr() == tc.client && p.Dst == server
				}
				if !c.WaitFor(5*time.Second, func(pkts []Packet) bool { return count(pkts, isSyn) == 1 && hasEcho(pkts, tc.client) }) {
					t.Errorf("capture %s: want one SYN from the client and the 5-byte echo both ways, got:\n%s", c.name, dump(c.Packets()))
				}
			}
			pktsC, pktsS := capC.Stop(), capS.Stop()
			if len(pktsC) != len(pktsS) {
				t.Errorf("router saw %d packets on %s and %d on %s, want equal:\n%s\n--\n%s",
					len(pktsC), tp.RouterClientIf, len(pktsS), tp.RouterServerIf, dump(pktsC), dump(pktsS))
			}
		})
	}
	counters := tp.Router.Nstat(t)
	if counters["IpForwDatagrams"] == 0 || counters["Ip6OutForwDatagrams"] == 0 {
		t.Errorf("router nstat IpForwDatagrams = %d, Ip6OutForwDatagrams = %d; want both > 0",
			counters["IpForwDatagrams"], counters["Ip6OutForwDatagrams"])
	}
}

func count(pkts []Packet, pred func(Packet) bool) int {
	n := 0
	for _, p := range pkts {
		if pred(p) {
			n++
		}
	}
	return n
}

// hasEcho reports whether the 5 bytes went from the client and back.
func hasEcho(pkts []Packet, client netip.Addr) bool {
	out := count(pkts, func(p Packet) bool { return p.Len == 5 && p.Src.Addr() == client })
	back := count(pkts, func(p Packet) bool { return p.Len == 5 && p.Dst.Addr() == client })
	return out == 1 && back == 1
}

func dump(pkts []Packet) string {
	var b strings.Builder
	for _, p := range pkts {
		b.WriteString(p.String() + "\n")
	}
	return b.String()
}
