package e2e

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// quietAfterDownload is what a TestQuietAfterNth server sends.
const quietAfterDownload = 16 << 20

// TestQuietAfterNth: `run` with bench/data.yaml, whose data rule delays
// the server's 9th data segment: a connection is queued until that
// segment has been (its rule can act on no later packet of it), then its
// data phase bypasses the queue (rules.Set.QuietAfter). A 16 MiB download,
// the bench's bulk, is queued a few dozen times: the handshake, nine data
// segments and the client's ACKs of them, the close. The same rule
// without nth, which may act on any data segment, keeps every packet
// queued: hundreds. Either way the 9th segment is delayed as the rule
// says, and the download arrives whole.
func TestQuietAfterNth(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "bench", "data.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const nth = "match: {packet: data, from: server, nth: 9, port: 8080}"
	if !strings.Contains(string(data), nth) {
		t.Fatalf("bench/data.yaml has no %q", nth)
	}
	for _, c := range []struct {
		name, config string
		quiet        bool
	}{
		{"nth", string(data) + closedExpectation, true},
		{"any data segment", strings.Replace(string(data), nth, "match: {packet: data, from: server, port: 8080}\n    probability: 0.000001", 1) + closedExpectation, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, m := newMetricsScenario(t, c.config)
			const status = "the rest of the data phase bypasses the queue"
			if got := strings.Contains(s.chaos.stderr.String(), status); got != c.quiet {
				t.Errorf("status line says %q: %v, want %v:\n%s", status, got, c.quiet, s.chaos.stderr.String())
			}
			// The server sends and closes first; it waits for the
			// client's close, so the server ends in TIME_WAIT.
			s.listen(func(conn net.Conn) error {
				if _, err := conn.Write(make([]byte, quietAfterDownload)); err != nil {
					return err
				}
				if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
					return err
				}
				if _, err := io.Copy(io.Discard, conn); err != nil {
					return err
				}
				return conn.Close()
			})
			conn, _ := s.dial()
			n, err := io.Copy(io.Discard, conn)
			if err != nil {
				t.Fatalf("download: %v after %d bytes", err, n)
			}
			conn.Close()
			if n != quietAfterDownload {
				t.Errorf("the client read %d bytes, want %d", n, quietAfterDownload)
			}
			s.waitClosed()
			mfs, _ := scrape(t, m)
			queued := value(mfs, "tcpchaos_queue_kernel_queued_total")
			_, _, evs := s.finish()
			if c.quiet {
				wantFault(t, evs, "slow-ninth-server-data", rules.Delay, statetrack.Data, statetrack.Server, 9)
				late := 0 // server data seen after the 9th
				for _, e := range packetEvents(evs, statetrack.Data, statetrack.Server) {
					if e.Nth > 9 {
						late++
					}
				}
				// The 10th's verdict lets the connection go quiet; the
				// release of the 9th, held 1 ms, wakes it, and the next
				// one seen lets it go quiet again; a few more may be
				// queued meanwhile, or after a verdict the queue
				// declined (a busy burst).
				if late > 20 {
					t.Errorf("%d server data segments seen after the 9th, want at most 20", late)
				}
			}
			t.Logf("%s: %v packets queued for a %d MiB download", c.name, queued, quietAfterDownload>>20)
			if c.quiet && queued > 80 {
				t.Errorf("%v packets queued, want at most 80: the data phase after the 9th data segment bypasses the queue", queued)
			}
			if !c.quiet && queued < 200 {
				t.Errorf("%v packets queued, want at least 200: a rule on any data segment keeps every packet queued", queued)
			}
		})
	}
}
