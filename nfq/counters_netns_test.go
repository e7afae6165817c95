package nfq_test

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// serveEchoByte serves on addr in the server namespace, for timeout:
// each connection's first byte is echoed.
func serveEchoByte(t *testing.T, tp *netlabtest.Topology, addr string, timeout time.Duration) {
	netlabtest.Serve(t, tp.Server.Listen(t, "tcp", addr), timeout, func(c net.Conn) error {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err == nil {
			c.Write(b[:])
		}
		return nil
	})
}

// TestQueueFullUnseenCounted: a queue of 2 packets, both held by the
// Handler (the first two SYNs, for 3 s): the connections made meanwhile
// find it full and pass unseen, uncounted by the queue (no id, so
// Unreceived stays 0). The queue-full counter counts each of their
// packets: every packet that crossed the router (the capture on its
// server side, both directions) and that the queue did not hand over.
func TestQueueFullUnseenCounted(t *testing.T) {
	tp := netlabtest.NewTopology(t)
	const hold, held, passing = 3 * time.Second, 2, 5
	var synsHeld atomic.Int32
	h := &fakeHandler{decide: func(seg *statetrack.Segment, _ int) rules.Verdict {
		if onlySyn(seg) && synsHeld.Add(1) <= held {
			return rules.Verdict{Decision: rules.Decision{Action: rules.Delay, Hold: hold}}
		}
		return rules.Verdict{}
	}}
	r, in := startInstalled(t, tp, h, nfq.InstallOptions{}, nfq.Options{Queue: queueNum, MaxQueueLen: held})
	var full *nfq.QueueFullCounter
	if err := tp.Router.Do(func() (err error) {
		full, err = in.QueueFullCounter([]*nfq.Queue{r.q})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer full.Close() // a second Close does nothing
	addr := serverAddr(tp, false)
	serveEchoByte(t, tp, addr, 20*time.Second)
	wire := tp.Router.Capture(t, tp.RouterServerIf, "tcp port 8080")

	var wg sync.WaitGroup
	for range held { // their SYNs fill the queue; the retransmissions pass
		wg.Go(func() {
			conn, err := tp.Client.Dial("tcp", addr, 10*time.Second)
			if err != nil {
				t.Errorf("held connection: %v", err)
				return
			}
			defer conn.Close()
			if err := echoOnce(conn, "h", 5*time.Second); err != nil {
				t.Errorf("held connection: %v", err)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.q.Stats().Held < held {
		if time.Now().After(deadline) {
			t.Fatalf("the queue did not hold %d SYNs within 5 s: %+v", held, r.q.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	for range passing {
		conn, err := tp.Client.Dial("tcp", addr, time.Second)
		if err != nil {
			t.Fatalf("connection past the full queue: %v", err)
		}
		if err := echoOnce(conn, "p", time.Second); err != nil {
			t.Fatalf("connection past the full queue: %v", err)
		}
		conn.Close()
	}
	if took := time.Since(start); took > hold/2 {
		t.Logf("the connections past the full queue took %v: some may have waited for the held SYNs", took)
	}
	wg.Wait()
	s := settled(t, r.q)
	time.Sleep(300 * time.Millisecond) // the last FIN's ACK is on the wire
	crossed := uint64(len(wire.Stop()))

	qf, err := full.Read()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("queue full: %+v; crossed %d, received %d", qf, crossed, s.Received)
	if s.Unreceived() != 0 {
		t.Errorf("%d packets passed unseen with an id (socket full): want none, only a full queue", s.Unreceived())
	}
	if want := crossed - s.Received; qf.Unseen != want || qf.RulePackets != crossed || qf.Queued != s.Received {
		t.Errorf("queue full: %+v; want %d packets at the rule (the wire), %d queued (received), %d unseen", qf, crossed, s.Received, want)
	}
	if err := full.Close(); err != nil {
		t.Error(err)
	}
	if _, err := full.Read(); err == nil {
		t.Error("Read after Close: no error")
	}
	if qf.Unseen < passing*5 { // at least SYN, SYN-ACK, ACK, data, echo each
		t.Errorf("%d packets passed the full queue unseen, want at least %d: was it full?", qf.Unseen, passing*5)
	}
}
