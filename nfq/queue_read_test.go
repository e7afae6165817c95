package nfq

import (
	"log/slog"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/decode"
)

// readerOnSocketPair starts a Queue's reader on one end of a socket pair
// standing in for the netlink socket, with a fake kernel recording the
// verdicts, and returns the queue and the end to write messages to.
func readerOnSocketPair(t *testing.T, k *fakeKernel) (*Queue, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	tv := unix.NsecToTimeval((10 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fds[0], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20); err != nil {
		t.Fatal(err)
	}
	q := &Queue{opts: Options{Poll: -1}, log: slog.New(slog.DiscardHandler), fd: fds[0]}
	q.core = newCore(&scripted{}, decode.NewParser(), newVerdictWriter(100, k), &fakeSender{}, false, nil, q.log, nil)
	return q, fds[1]
}

// startReader runs q's reader, as Run does; the channel is closed when it
// returns.
func startReader(q *Queue) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.read()
	}()
	return done
}

// TestReadGivesEveryMessageAVerdict feeds the reader more datagrams than
// one burst holds, through a socket pair standing in for the netlink
// socket: every packet gets exactly one verdict, the one read last in a
// full burst included.
func TestReadGivesEveryMessageAVerdict(t *testing.T) {
	k := newFakeKernel()
	q, kernelEnd := readerOnSocketPair(t, k)
	const n = 2*maxBurst + 3
	queuePackets(t, k, kernelEnd, 1, n)
	readerDone := startReader(q)
	deadline := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case <-k.changed:
			k.mu.Lock()
			done = len(k.verdicts) == n
			k.mu.Unlock()
		case <-deadline:
			done = true
		}
	}
	q.closing.Store(true)
	<-readerDone
	for id := uint32(1); id <= n; id++ {
		if v := k.verdict(t, id); v != verdictAccept {
			t.Errorf("packet %d: verdict %d, want accept", id, v)
		}
	}
}

// queuePackets has the fake kernel queue packets first..last and writes
// their messages to the reader's socket.
func queuePackets(t *testing.T, k *fakeKernel, kernelEnd int, first, last uint32) {
	t.Helper()
	udp := udpPacket(t)
	for id := first; id <= last; id++ {
		k.enqueue(id)
		if _, err := unix.Write(kernelEnd, packetMessage(id, 0, udp, 0)); err != nil {
			t.Fatalf("queue packet %d: %v", id, err)
		}
	}
}

// TestCloseDrainsTheSocket: packets still unread in the socket when the
// queue closes get their verdict (accept) instead of being dropped by the
// kernel at unbind.
func TestCloseDrainsTheSocket(t *testing.T) {
	k := newFakeKernel()
	q, kernelEnd := readerOnSocketPair(t, k)
	q.closing.Store(true) // closing before the reader ever reads
	q.core.stop(time.Now())
	const n = 3*maxBurst + 5
	queuePackets(t, k, kernelEnd, 1, n)
	select {
	case <-startReader(q):
	case <-time.After(5 * time.Second):
		t.Fatal("reader did not finish draining")
	}
	for id := uint32(1); id <= n; id++ {
		if v := k.verdict(t, id); v != verdictAccept {
			t.Errorf("packet %d: verdict %d, want accept", id, v)
		}
	}
}
