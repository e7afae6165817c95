package netlabtest

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Socket is one TCP socket as ss(8) lists it.
type Socket struct {
	State statetrack.State
	// Local and Peer are the socket's endpoints; a wildcard address ("*")
	// is the zero netip.Addr, with the port kept.
	Local, Peer netip.AddrPort
}

// SS returns the output of "ss -tan" in the namespace, for test logs.
func (n *NS) SS(t testing.TB) string {
	t.Helper()
	return n.Run(t, "ss", "-tan")
}

// Sockets lists the namespace's TCP sockets ("ss -tanH") whose local or peer
// port is port; port 0 lists them all.
func (n *NS) Sockets(t testing.TB, port uint16) []Socket {
	t.Helper()
	socks, err := parseSS(n.Run(t, "ss", "-tanH"))
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	if port == 0 {
		return socks
	}
	kept := socks[:0]
	for _, s := range socks {
		if s.Local.Port() == port || s.Peer.Port() == port {
			kept = append(kept, s)
		}
	}
	return kept
}

// SocketStates counts the namespace's TCP sockets on port (local or peer;
// 0 for all) by state, e.g. states[statetrack.TimeWait].
func (n *NS) SocketStates(t testing.TB, port uint16) map[statetrack.State]int {
	t.Helper()
	return StateCounts(n.Sockets(t, port))
}

// StateCounts counts socks by state, e.g. states[statetrack.TimeWait].
func StateCounts(socks []Socket) map[statetrack.State]int {
	states := make(map[statetrack.State]int)
	for _, s := range socks {
		states[s.State]++
	}
	return states
}

// parseSS parses "ss -tanH" output: state, Recv-Q, Send-Q, local, peer.
func parseSS(out string) ([]Socket, error) {
	var socks []Socket
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 5 {
			return nil, fmt.Errorf("parse ss line %q: want at least 5 fields", line)
		}
		st, err := statetrack.ParseState(f[0])
		if err != nil {
			return nil, fmt.Errorf("parse ss line %q: %w", line, err)
		}
		local, err := parseSSAddrPort(f[3])
		if err != nil {
			return nil, fmt.Errorf("parse ss line %q: %w", line, err)
		}
		peer, err := parseSSAddrPort(f[4])
		if err != nil {
			return nil, fmt.Errorf("parse ss line %q: %w", line, err)
		}
		socks = append(socks, Socket{State: st, Local: local, Peer: peer})
	}
	return socks, nil
}

// parseSSAddrPort parses ss's "198.18.1.2:80", "[fd00:1::2]:80",
// "127.0.0.53%lo:53" and "*:80" forms.
func parseSSAddrPort(s string) (netip.AddrPort, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("address %q has no port", s)
	}
	host, portStr := strings.Trim(s[:i], "[]"), s[i+1:]
	if j := strings.IndexByte(host, '%'); j >= 0 {
		host = host[:j]
	}
	var port uint64
	if portStr != "*" {
		var err error
		if port, err = strconv.ParseUint(portStr, 10, 16); err != nil {
			return netip.AddrPort{}, fmt.Errorf("address %q: bad port: %w", s, err)
		}
	}
	if host == "*" {
		return netip.AddrPortFrom(netip.Addr{}, uint16(port)), nil
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, err)
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
