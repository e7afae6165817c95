package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/netlab"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/internal/oracle"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// http10Requests is how many connections TestHTTP10CloseMatchesKernel makes
// per address family; curl's --max-time bounds them in time.
const (
	http10Requests = 200
	http10Timeout  = 60 * time.Second
)

// TestHTTP10CloseMatchesKernel: real programs, no fault. Python's
// http.server speaks HTTP/1.0 and closes right after its response; curl
// closes as soon as it has read it, so the two FINs cross between the
// router and the client in most connections (a simultaneous close: both
// ends end in TIME_WAIT) and pass the router one after the other in the
// rest (the client closes passively and only the server keeps a
// TIME_WAIT). Once every connection has closed, the tracker's final states
// (each connection's last event before any expiry) must put each
// connection's client and server in TIME_WAIT where the kernels' own
// sockets are (ss in the client and the server namespace), but for
// connections a new incarnation replaced and up to maxUnseenCrossingAcks
// crossing closes of a known miss; and no event may show a pair of states
// two real endpoints cannot be in (oracle.Possible).
func TestHTTP10CloseMatchesKernel(t *testing.T) {
	t.Parallel()
	requireTools(t, "python3", "curl")
	families(t, func(t *testing.T, v6 bool) {
		tp := netlabtest.NewTopology(t)
		server := tp.Server4
		if v6 {
			server = tp.Server6
		}
		serverAP := netip.AddrPortFrom(server, port)
		startHTTPServer(t, tp.Server, serverAP)
		chaos := startTcpchaos(t, tp.Router, filepath.Join("testdata", "observe.yaml"))

		ok := curlEach(t, tp.Client, fmt.Sprintf("http://%s/hello.txt", serverAP), http10Requests)
		if ok != http10Requests {
			t.Errorf("%d of %d requests answered 200", ok, http10Requests)
		}
		settle(t, tp.Client, tp.Server)
		clientSocks, serverSocks := tp.Client.Sockets(t, port), tp.Server.Sockets(t, port)
		kernelClient, kernelServer := netlabtest.StateCounts(clientSocks)[statetrack.TimeWait], netlabtest.StateCounts(serverSocks)[statetrack.TimeWait]
		evs := chaos.stop()

		finals := currentFinals(evs)
		trackerClient, trackerServer := oracle.Count(finals, statetrack.TimeWait)
		bad := oracle.ImpossiblePairs(evs)
		t.Logf("%d connections; TIME_WAIT client side: kernel %d, tracker %d; server side: kernel %d, tracker %d; %d events with an impossible pair",
			len(finals), kernelClient, trackerClient, kernelServer, trackerServer, len(bad))
		if n := len(oracle.Finals(evs)); n != http10Requests {
			t.Errorf("the events show %d connections, want %d", n, http10Requests)
		} else if n != len(finals) {
			t.Logf("%d connections replaced by a new incarnation on their port, not compared", n-len(finals))
		}
		var crossing, other []string
		for _, d := range timeWaitDifferences(evs, clientSocks, serverSocks) {
			if d.unseenAck {
				crossing = append(crossing, d.text)
			} else {
				other = append(other, d.text)
			}
		}
		if len(other) > 0 || len(crossing) > maxUnseenCrossingAcks {
			t.Errorf("TIME_WAIT: client side tracker %d, kernel %d; server side tracker %d, kernel %d; the connections that differ:\n%s%s",
				trackerClient, kernelClient, trackerServer, kernelServer, strings.Join(other, ""), strings.Join(crossing, ""))
		} else if len(crossing) > 0 {
			t.Logf("%d crossing closes whose ACK of the first FIN passed unseen (at most %d allowed):\n%s",
				len(crossing), maxUnseenCrossingAcks, strings.Join(crossing, ""))
		}
		if len(bad) > 0 {
			t.Errorf("%d events show a pair of states no two endpoints can be in, the first ones:\n%s",
				len(bad), strings.Join(bad[:min(len(bad), 10)], "\n"))
		}
	})
}

// currentFinals is oracle.Finals without the connections a new
// incarnation replaced: the client took the port again (a SYN to the
// server's TIME_WAIT, which ends that TIME_WAIT in the kernel too), so
// neither kernel keeps a socket of them.
func currentFinals(evs []events.Event) map[uint64]oracle.Pair {
	finals := oracle.Finals(evs)
	for _, e := range evs {
		if why, gone := e.Reason.Gone(); gone && why == statetrack.Replaced {
			delete(finals, e.ConnID)
		}
	}
	return finals
}

// maxUnseenCrossingAcks bounds, per 200 connections, the crossing closes
// where the tracker leaves the first closer in CLOSING while its kernel
// reached TIME_WAIT. Under the quiet close the first FIN's verdict lets
// the peer's ACK of it bypass the queue; in a crossing the peer sends that
// ACK after its own FIN, which clears the bypass in the router's mangle
// table, but the two leave the peer on two CPUs (the FIN from its
// program, the ACK from the softirq that delivered the first FIN) and the
// ACK, presumably passing the router's mangle first, goes unseen: the
// tracker keeps the first closer in CLOSING (README "Quiet handshake and
// quiet close"). On a loaded machine: 1 in 400 to 1 in 2,400 connections
// here, so that 3 or more in 200 come in about 1.4 % of runs.
const maxUnseenCrossingAcks = 4

// timeWaitDifference is a connection whose TIME_WAITs differ between the
// kernel and the tracker; unseenAck: it is a crossing close whose first
// closer the tracker left in CLOSING (see maxUnseenCrossingAcks).
type timeWaitDifference struct {
	text      string
	unseenAck bool
}

// unseenCrossingAck reports whether a connection's events and final
// states p are the known miss (see maxUnseenCrossingAcks): a first FIN,
// the peer's FIN not acknowledging it, no ACK of the first FIN from the
// peer, and the first closer left in CLOSING with the peer in TIME_WAIT.
func unseenCrossingAck(conn []events.Event, p oracle.Pair) bool {
	var first, second *events.Event
	for i := range conn {
		e := &conn[i]
		switch {
		case e.Kind != statetrack.Fin:
		case first == nil:
			first = e
		case second == nil && e.From != first.From:
			second = e
		}
	}
	if first == nil || second == nil {
		return false
	}
	finAck := first.Seq + first.Len + 1 // uint32: wraps as sequence numbers do
	if second.Ack == finAck {
		return false // not a crossing: the peer's FIN acknowledges the first
	}
	for _, e := range conn {
		if e.From == second.From && e.Ack == finAck {
			return false // the peer's ACK of the first FIN was seen
		}
	}
	closer, peer := p.Client, p.Server
	if first.From == statetrack.Server {
		closer, peer = peer, closer
	}
	return closer == statetrack.Closing && peer == statetrack.TimeWait
}

// timeWaitDifferences lists, sorted, the connections whose client or
// server is in TIME_WAIT in the kernel (the sockets of ss in the client and
// the server namespace) but not in the tracker's final states, or the
// other way round, with their events; and the kernel's TIME_WAITs of no
// connection in the events.
func timeWaitDifferences(evs []events.Event, clientSocks, serverSocks []netlabtest.Socket) []timeWaitDifference {
	kernel := make(map[netip.AddrPort][2]bool) // by client endpoint: client, server in TIME_WAIT
	mark := func(ap netip.AddrPort, side int) {
		k := kernel[ap]
		k[side] = true
		kernel[ap] = k
	}
	for _, s := range clientSocks {
		if s.State == statetrack.TimeWait {
			mark(s.Local, 0)
		}
	}
	for _, s := range serverSocks {
		if s.State == statetrack.TimeWait {
			mark(s.Peer, 1)
		}
	}
	byConn := make(map[uint64][]events.Event)
	for _, e := range evs {
		byConn[e.ConnID] = append(byConn[e.ConnID], e)
	}
	var ds []timeWaitDifference
	seen := make(map[netip.AddrPort]bool)
	for id, p := range currentFinals(evs) {
		conn := byConn[id]
		ap := conn[0].Client
		seen[ap] = true
		if k := kernel[ap]; k[0] != (p.Client == statetrack.TimeWait) || k[1] != (p.Server == statetrack.TimeWait) {
			ds = append(ds, timeWaitDifference{
				text:      fmt.Sprintf("%v: kernel TIME_WAIT client %v server %v, tracker %s/%s:\n%s", ap, k[0], k[1], p.Client, p.Server, dumpEvents(conn)),
				unseenAck: k[0] && k[1] && unseenCrossingAck(conn, p),
			})
		}
	}
	for ap, k := range kernel {
		if !seen[ap] {
			ds = append(ds, timeWaitDifference{text: fmt.Sprintf("%v: kernel TIME_WAIT client %v server %v, no connection of the events\n", ap, k[0], k[1])})
		}
	}
	slices.SortFunc(ds, func(a, b timeWaitDifference) int { return strings.Compare(a.text, b.text) })
	return ds
}

// requireTools skips or fails the test as netlabtest.RequirePrivileged
// does, and fails it when one of the programs is not in PATH
// (scripts/test-deps installs them).
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	netlabtest.RequirePrivileged(t)
	if err := netlab.Check(names...); err != nil {
		t.Fatal(err)
	}
}

// startHTTPServer runs python3's http.server (HTTP/1.0) in ns on ap,
// serving a directory with hello.txt, and waits until it listens. The
// namespace's removal ends it if the test's cleanup did not.
func startHTTPServer(t *testing.T, ns *netlabtest.NS, ap netip.AddrPort) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command("python3", "-m", "http.server", fmt.Sprint(ap.Port()), "--bind", ap.Addr().String(), "--directory", dir)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start http.server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if !waitState(t, ns, statetrack.Listen, readyTimeout) {
		t.Fatalf("http.server not listening on %s after %v: %s", ap, readyTimeout, stderr.String())
	}
}

// curlEach fetches url n times with one curl in ns, each request a
// connection of its own (the server closes after each response), and
// returns how many were answered 200.
func curlEach(t *testing.T, ns *netlabtest.NS, url string, n int) int {
	t.Helper()
	var list strings.Builder
	for i := range n {
		fmt.Fprintf(&list, "url = \"%s?n=%d\"\noutput = \"/dev/null\"\n", url, i)
	}
	cmd := ns.Command("curl", "--globoff", "--silent", "--show-error", "--max-time", fmt.Sprint(http10Timeout.Seconds()),
		"--write-out", "%{http_code}\n", "--config", "-")
	cmd.Stdin = strings.NewReader(list.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("curl: %v: %s", err, stderr.String())
	}
	return strings.Count(string(out), "200\n")
}

// settle waits until no socket on the port is left in either namespace
// but listeners and TIME_WAIT: every close has ended on both hosts.
func settle(t *testing.T, hosts ...*netlabtest.NS) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for _, ns := range hosts {
		for {
			busy := 0
			for st, n := range ns.SocketStates(t, port) {
				if st != statetrack.Listen && st != statetrack.TimeWait {
					busy += n
				}
			}
			if busy == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: sockets still closing after %v:\n%s", ns.Name, ioTimeout, ns.SS(t))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestUnseenCrossingAck: the known miss of TestHTTP10CloseMatchesKernel
// (events of one seen under load) is told from a crossing close whose ACK
// of the first FIN was seen, and from one whose peer's FIN acknowledged
// the first FIN.
func TestUnseenCrossingAck(t *testing.T) {
	fin := func(from statetrack.Side, seq, ack uint32) events.Event {
		return events.Event{From: from, Kind: statetrack.Fin, Seq: seq, Ack: ack}
	}
	ack := func(from statetrack.Side, seq, ack uint32) events.Event {
		return events.Event{From: from, Kind: statetrack.FinalAck, Seq: seq, Ack: ack}
	}
	missed := oracle.Pair{Client: statetrack.TimeWait, Server: statetrack.Closing}
	for _, c := range []struct {
		name string
		evs  []events.Event
		want bool
	}{
		{"miss", []events.Event{fin(statetrack.Server, 500, 100), fin(statetrack.Client, 100, 500), ack(statetrack.Server, 501, 101)}, true},
		{"peer's ACK seen", []events.Event{fin(statetrack.Server, 500, 100), fin(statetrack.Client, 100, 500), ack(statetrack.Client, 101, 501), ack(statetrack.Server, 501, 101)}, false},
		{"not crossing", []events.Event{fin(statetrack.Server, 500, 100), fin(statetrack.Client, 100, 501), ack(statetrack.Server, 501, 101)}, false},
	} {
		if got := unseenCrossingAck(c.evs, missed); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
