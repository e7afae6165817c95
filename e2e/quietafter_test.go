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

// quietAfterUpload is what a TestQuietAfterNth client sends.
const quietAfterUpload = 16 << 20

// TestQuietAfterNth: `run` with bench/data.yaml, whose data rule delays
// the client's 9th data segment: a connection is queued until that
// segment has been (its rule can act on no later packet of it), then its
// data phase bypasses the queue (rules.Set.QuietAfter). A 16 MiB upload
// is queued a few dozen times: the handshake, nine data segments and the
// server's ACKs of them, the close. The same rule without nth, which may
// act on any data segment, keeps every packet queued: hundreds. Either
// way the 9th segment is delayed as the rule says, and the upload
// arrives whole.
func TestQuietAfterNth(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "bench", "data.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const nth = "match: {packet: data, from: client, nth: 9, port: 8080}"
	if !strings.Contains(string(data), nth) {
		t.Fatalf("bench/data.yaml has no %q", nth)
	}
	for _, c := range []struct {
		name, config string
		quiet        bool
	}{
		{"nth", string(data) + closedExpectation, true},
		{"any data segment", strings.Replace(string(data), nth, "match: {packet: data, from: client, port: 8080}\n    probability: 0.000001", 1) + closedExpectation, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, m := newMetricsScenario(t, c.config)
			const status = "the rest of the data phase bypasses the queue"
			if got := strings.Contains(s.chaos.stderr.String(), status); got != c.quiet {
				t.Errorf("status line says %q: %v, want %v:\n%s", status, got, c.quiet, s.chaos.stderr.String())
			}
			got := make(chan int64, 1)
			s.listen(func(conn net.Conn) error {
				n, err := io.Copy(io.Discard, conn)
				got <- n
				if err != nil {
					return err
				}
				return conn.Close()
			})
			conn, _ := s.dial()
			tc := conn.(*net.TCPConn)
			if _, err := tc.Write(make([]byte, quietAfterUpload)); err != nil {
				t.Fatalf("upload: %v", err)
			}
			if err := tc.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, tc); n != 0 || err != nil {
				t.Fatalf("wait for the server's close: %d bytes, %v", n, err)
			}
			tc.Close()
			if n := <-got; n != quietAfterUpload {
				t.Errorf("the server read %d bytes, want %d", n, quietAfterUpload)
			}
			s.waitClosed()
			mfs, _ := scrape(t, m)
			queued := value(mfs, "tcpchaos_queue_kernel_queued_total")
			_, _, evs := s.finish()
			if c.quiet {
				wantFault(t, evs, "slow-ninth-client-data", rules.Delay, statetrack.Data, statetrack.Client, 9)
				late := 0 // client data seen after the 9th
				for _, e := range packetEvents(evs, statetrack.Data, statetrack.Client) {
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
					t.Errorf("%d client data segments seen after the 9th, want at most 20", late)
				}
			}
			t.Logf("%s: %v packets queued for a %d MiB upload", c.name, queued, quietAfterUpload>>20)
			if c.quiet && queued > 80 {
				t.Errorf("%v packets queued, want at most 80: the data phase after the 9th data segment bypasses the queue", queued)
			}
			if !c.quiet && queued < 200 {
				t.Errorf("%v packets queued, want at least 200: a rule on any data segment keeps every packet queued", queued)
			}
		})
	}
}
