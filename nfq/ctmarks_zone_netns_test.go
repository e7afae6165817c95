package nfq_test

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/nfq"
)

// TestConnMarksClearedDirectionalZone: a connection whose conntrack zone
// applies to the original direction only (CT --zone-orig: the kernel
// dumps it as CTA_TUPLE_ZONE inside CTA_TUPLE_ORIG, not as CTA_ZONE) loses
// tcpchaos's bits at Remove like one in a plain zone. The update must name
// the entry by that zone, or the kernel answers ENOENT, which
// clearConnMarks takes for an entry gone and does not report.
func TestConnMarksClearedDirectionalZone(t *testing.T) {
	tp := netlabtest.NewTopology(t)
	tp.Router.Run(t, "iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "-m", "multiport", "--ports", fmt.Sprint(serverPort),
		"-j", "CT", "--zone-orig", "5")
	netlabtest.Serve(t, tp.Server.Listen(t, "tcp", serverAddr(tp, false)), 20*time.Second, func(c net.Conn) error {
		_, err := io.Copy(c, c)
		return err
	})
	in := installQuiet(t, tp)
	conn := dialServer(t, tp, false)
	markConn(t, tp, false, conn)
	// vishvananda/netlink reads CTA_ZONE only: the entry lists in zone 0.
	if got := connMark(t, tp, false, 0, conn); got != nfq.ConnMarks|otherMark {
		t.Fatalf("mark before Remove: %#x, want %#x", got, nfq.ConnMarks|otherMark)
	}
	err := tp.Router.Do(in.Remove)
	if got := connMark(t, tp, false, 0, conn); got != otherMark {
		t.Errorf("mark after Remove: %#x (Remove: %v), want %#x", got, err, otherMark)
	}
}
