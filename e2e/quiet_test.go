package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestQuietHandshake: without rules, after each
// SYN-ACK's verdict the third ACK bypasses the queue (the quiet
// handshake): the wire carries it on both sides of the router, no event
// reports it, and a quiet-handshake state event takes the server for
// ESTABLISHED; the connections still end in TIME_WAIT/CLOSED. The status
// line says so. With an expectation on SYN_RCVD the third ACK is queued
// as before.
func TestQuietHandshake(t *testing.T) {
	t.Parallel()
	const n = 3
	config := func(expect string) string {
		path := filepath.Join(t.TempDir(), "quiet.yaml")
		if err := os.WriteFile(path, []byte("intercept:\n  ports: [8080]\nexpect:\n  - name: e\n    "+expect+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, c := range []struct {
		name, config string
		quiet        bool
	}{
		{"quiet", config("reaches: {state: TIME_WAIT, from: client, connections: all}"), true},
		{"expectation on SYN_RCVD", config("never: {state: SYN_RCVD, longer-than: 5s}"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newScenarioWith(t, c.config, false)
			s.listen(pingPong(0))
			for range n {
				conn, _ := s.dial()
				request(t, conn)
				conn.Close()
			}
			waitFor(t, s.toClient, "every close", atLeast(2*n, isFin))
			time.Sleep(200 * time.Millisecond) // the final ACKs
			status := s.chaos.stderr.String()
			atClient, atServer, evs := s.finish()
			if got := strings.Contains(status, "third ACK (quiet handshake)"); got != c.quiet {
				t.Errorf("status line names the quiet handshake: %v, want %v:\n%s", got, c.quiet, status)
			}
			// Each third ACK is on the wire at both sides of the router.
			for side, pkts := range map[string]int{"client": count(atClient, from(s.client), isPureAck), "server": count(atServer, from(s.client), isPureAck)} {
				if pkts < n {
					t.Errorf("%d pure ACKs from the client on the %s side, want at least %d (the third ACKs)", pkts, side, n)
				}
			}
			handshakeAcks, assumed, ended := 0, countReason(evs, events.QuietHandshake), 0
			for _, e := range evs {
				if e.Kind == statetrack.HandshakeAck && !e.IsState() {
					handshakeAcks++
				}
				if e.Reason == events.QuietHandshake && (e.ClientState != statetrack.Established || e.ServerState != statetrack.Established || e.HasPacket()) {
					t.Errorf("quiet-handshake event %+v, want both ESTABLISHED and no packet", e)
				}
				if !e.IsState() && e.Kind == statetrack.FinalAck && e.ClientState == statetrack.TimeWait && e.ServerState == statetrack.Closed {
					ended++
				}
			}
			switch {
			case c.quiet && (handshakeAcks != 0 || assumed != n):
				t.Errorf("%d handshake-ack events, %d quiet-handshake events, want 0 and %d", handshakeAcks, assumed, n)
			case !c.quiet && (handshakeAcks != n || assumed != 0):
				t.Errorf("%d handshake-ack events, %d quiet-handshake events, want %d and 0", handshakeAcks, assumed, n)
			}
			if ended != n {
				t.Errorf("%d final-acks leaving TIME_WAIT/CLOSED, want %d", ended, n)
			}
		})
	}
}
