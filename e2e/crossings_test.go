package e2e

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/oracle"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// The first byte a crossings test's client sends: how its connection
// closes.
const (
	clientFirst = 'c' // the client closes, the server after EOF
	serverFirst = 's' // the server closes, the client after EOF
	halfClose   = 'h' // the client shuts its side, the server drains crossingsDrain, then closes
)

// crossingsDrain is what the server sends after a half-close.
const crossingsDrain = 256 << 10

// closedExpectation, appended to a config, expects every connection to
// reach TIME_WAIT.
const closedExpectation = "expect:\n  - name: closed\n    reaches: {state: TIME_WAIT, connections: all}\n"

// passiveLinger is how long the passive closer waits before its own
// close: longer than Linux's delayed ACK (40 ms at least, 200 ms at most;
// a FIN puts the receiver in delayed-ACK mode), so that the ACK of the
// first FIN is a segment of its own and not carried by the second FIN.
const passiveLinger = 250 * time.Millisecond

// TestQuietCloseCrossings: `run` with bench/control.yaml (rules on the 9th
// SYN and the 9th final ACK: the data phase, the handshake and the close
// may be quiet), n connections that the client closes first and n that
// the server closes first (the passive closer lingering, so that the ACK
// of the first FIN is a segment of its own), and one half-close drain.
// The queue's own counter (tcpchaos_queue_kernel_queued_total) shows at
// most 5 crossings a connection: the SYN, the SYN-ACK, both FINs and the
// final ACK; the third ACK, the ACK of the first FIN and the drain pass
// in the kernel. Only the retransmissions the events report may add to
// that (a loaded machine's late ACK makes its peer send the SYN-ACK or a
// FIN again, which is queued again). With one rule more, on the 9th
// fin-ack (it never fires, but keeps the quiet close off), the ACK of
// every first FIN is queued too: at least 6. Either way every connection
// ends TIME_WAIT/CLOSED and none fails.
func TestQuietCloseCrossings(t *testing.T) {
	t.Parallel()
	const n = 8
	control, err := os.ReadFile(filepath.Join("..", "bench", "control.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const finAck = "  - name: lose-ninth-fin-ack\n    match: {packet: fin-ack, nth: 9, port: 8080}\n    action: drop\n"
	for _, c := range []struct {
		name, config string
		quiet        bool
	}{
		{"quiet", string(control) + closedExpectation, true},
		{"fin-ack rule", string(control) + finAck + closedExpectation, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, m := newMetricsScenario(t, c.config)
			if got := strings.Contains(s.chaos.stderr.String(), "(quiet close)"); got != c.quiet {
				t.Errorf("status line names the quiet close: %v, want %v:\n%s", got, c.quiet, s.chaos.stderr.String())
			}
			s.listen(closeAsAsked)
			var orders []byte
			for range n {
				orders = append(orders, clientFirst, serverFirst)
			}
			orders = append(orders, halfClose)
			for _, o := range orders {
				closeAsked(t, s, o)
			}
			conns := len(orders)
			mfs, _ := scrape(t, m)
			ended := func() float64 {
				return value(mfs, "tcpchaos_connections", "client_state=TIME_WAIT", "server_state=CLOSED") +
					value(mfs, "tcpchaos_connections", "client_state=CLOSED", "server_state=TIME_WAIT")
			}
			for deadline := time.Now().Add(ioTimeout); ended() != float64(conns) && time.Now().Before(deadline); {
				time.Sleep(100 * time.Millisecond)
				mfs, _ = scrape(t, m)
			}
			queued := value(mfs, "tcpchaos_queue_kernel_queued_total")
			_, _, evs := s.finish()
			// Past the five, a connection is queued again for each
			// retransmission, and for a quiet verdict the queue declined
			// (its burst was not read dry, or a later packet of the
			// connection was in it: on a loaded machine), which leaves
			// the packet after it queued: a third ACK, the ACK of the
			// first FIN, data. A few connections may have those; more
			// would mean the quiet phases do not work.
			retransmitted, declined := 0, 0
			for _, e := range evs {
				switch {
				case e.IsState() || e.Injected:
				case e.Retransmission:
					retransmitted++
				case e.Kind != statetrack.Syn && e.Kind != statetrack.SynAck && e.Kind != statetrack.Fin && e.Kind != statetrack.FinalAck:
					declined++
				}
			}
			t.Logf("%d connections, %v packets queued (%.2f a connection), %d retransmissions, %d packets after a declined quiet verdict",
				conns, queued, queued/float64(conns), retransmitted, declined)
			if c.quiet && (queued > float64(5*conns+retransmitted+declined) || declined > conns/4) {
				t.Errorf("%v packets queued for %d connections with %d retransmissions and %d packets after a declined quiet verdict, want at most %d (5 a connection) and at most %d such packets",
					queued, conns, retransmitted, declined, 5*conns+retransmitted+declined, conns/4)
			}
			if !c.quiet && queued < float64(6*conns) {
				t.Errorf("%v packets queued for %d connections, want at least %d (the ACK of each first FIN too)", queued, conns, 6*conns)
			}
			finals := oracle.Finals(evs)
			if len(finals) != conns {
				t.Errorf("%d connections in the events, want %d", len(finals), conns)
			}
			for id, f := range finals {
				if f != (oracle.Pair{Client: statetrack.TimeWait, Server: statetrack.Closed}) && f != (oracle.Pair{Client: statetrack.Closed, Server: statetrack.TimeWait}) {
					t.Errorf("connection %d ended %s/%s, want TIME_WAIT/CLOSED", id, f.Client, f.Server)
				}
			}
		})
	}
}

// closeAsAsked serves one connection of TestQuietCloseCrossings: it
// reads the order byte, echoes it and closes as it says.
func closeAsAsked(c net.Conn) error {
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if _, err := c.Write(b[:]); err != nil {
		return err
	}
	if b[0] == serverFirst {
		return c.Close()
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		return err
	}
	if b[0] == halfClose {
		if _, err := c.Write(make([]byte, crossingsDrain)); err != nil {
			return err
		}
	} else {
		time.Sleep(passiveLinger)
	}
	return c.Close()
}

// closeAsked makes one connection of TestQuietCloseCrossings and closes
// it in order o (the server echoes o first).
func closeAsked(t *testing.T, s *scenario, o byte) {
	t.Helper()
	c, _ := s.dial()
	tc := c.(*net.TCPConn)
	if _, err := tc.Write([]byte{o}); err != nil {
		t.Fatalf("write the close order: %v", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil || b[0] != o {
		t.Fatalf("read the echo of %q: %q, %v", o, b[:], err)
	}
	switch o {
	case clientFirst:
		if err := tc.Close(); err != nil {
			t.Fatal(err)
		}
	case serverFirst:
		if n, err := io.Copy(io.Discard, tc); n != 0 || err != nil {
			t.Fatalf("wait for the server's close: %d bytes, %v", n, err)
		}
		time.Sleep(passiveLinger)
		if err := tc.Close(); err != nil {
			t.Fatal(err)
		}
	case halfClose:
		if err := tc.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, tc); err != nil || n != crossingsDrain {
			t.Fatalf("drain after the half-close: %d bytes, %v, want %d", n, err, crossingsDrain)
		}
		if err := tc.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
