package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
)

// unseenFullRE is the summary's count of what passed a full queue.
var unseenFullRE = regexp.MustCompile(`(\d+) passed the full queue unseen`)

// TestQueueLength: intercept.queue-length bounds how many packets wait in
// the kernel for a verdict. With a 1-second delay of every SYN, 8
// simultaneous connects fill a queue of 2 and the other SYNs pass unseen
// (fail-open: every connect succeeds), which the summary counts; with the
// default length (1024) nothing passes unseen.
func TestQueueLength(t *testing.T) {
	t.Parallel()
	const conns = 8
	for _, c := range []struct {
		name, length string
		unseen       func(n int) bool
		want         string
	}{
		{"length 2", "  queue-length: 2\n", func(n int) bool { return n >= conns-2 }, fmt.Sprintf("at least %d", conns-2)},
		{"default", "", func(n int) bool { return n == 0 }, "0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "queue-length.yaml")
			config := "intercept:\n  ports: [8080]\n" + c.length +
				"rules:\n  - name: slow-syn\n    match: {packet: syn}\n    action: {delay: 1s}\n"
			if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
				t.Fatal(err)
			}
			tp := netlabtest.NewTopology(t)
			ap := fmt.Sprintf("%s:%d", tp.Server4, port)
			serve(t, tp.Server.Listen(t, "tcp", ap), pingPong(0))
			tc := startTcpchaos(t, tp.Router, path)
			var wg sync.WaitGroup
			errs := make(chan error, conns)
			for range conns {
				wg.Go(func() {
					conn, err := tp.Client.Dial("tcp", ap, ioTimeout)
					if err != nil {
						errs <- err
						return
					}
					conn.Close()
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("connect: %v", err)
			}
			tc.stop()
			m := unseenFullRE.FindStringSubmatch(tc.stdout.String())
			if m == nil {
				t.Fatalf("the summary lacks the queue-full count:\n%s", tc.stdout.String())
			}
			if n, _ := strconv.Atoi(m[1]); !c.unseen(n) {
				t.Errorf("%d packets passed the full queue unseen, want %s:\n%s", n, c.want, tc.stdout.String())
			}
		})
	}
}
