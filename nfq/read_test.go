package nfq

import (
	"log/slog"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/decode"
)

// TestReadGivesEveryMessageAVerdict feeds the reader more datagrams than
// one burst holds, through a socket pair standing in for the netlink
// socket: every packet gets exactly one verdict, the one read last in a
// full burst included.
func TestReadGivesEveryMessageAVerdict(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	tv := unix.NsecToTimeval((10 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fds[0], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20); err != nil {
		t.Fatal(err)
	}
	k := newFakeKernel()
	udp := udpPacket(t)
	const n = 2*maxBurst + 3
	for id := uint32(1); id <= n; id++ {
		k.enqueue(id)
		if _, err := unix.Write(fds[1], packetMessage(id, 0, udp, 0)); err != nil {
			t.Fatalf("queue packet %d: %v", id, err)
		}
	}
	q := &Queue{opts: Options{Poll: -1}, log: slog.New(slog.DiscardHandler), fd: fds[0], readerDone: make(chan struct{})}
	q.core = newCore(&scripted{}, decode.NewParser(), newVerdictWriter(100, k), &fakeSender{}, false, q.log)
	go q.read()
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
	<-q.readerDone
	unix.Close(fds[0])
	for id := uint32(1); id <= n; id++ {
		if v := k.verdict(t, id); v != verdictAccept {
			t.Errorf("packet %d: verdict %d, want accept", id, v)
		}
	}
}
