//go:build linux

package nfq

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Stats is a snapshot of a queue's counters. Every packet received gets
// exactly one verdict: Received = Accepted + Dropped + Delayed, once the
// held packets are released.
type Stats struct {
	// Received counts packets read from the queue.
	Received uint64
	// Accepted counts packets let through at once: those the Handler
	// accepted or duplicated, those it could not see (DecodeFailures) or
	// panicked on (HandlerPanics), and those read while stopping.
	Accepted uint64
	// Dropped counts packets dropped on the Handler's decision.
	Dropped uint64
	// Delayed counts packets held, then let through; Held of them are
	// still held.
	Delayed uint64
	Held    int64
	// Duplicated counts packets whose copies were scheduled (each is
	// counted in Accepted too).
	Duplicated uint64
	// CopiesSent counts copies sent; CopiesFailed those the raw socket
	// refused; CopiesCancelled those not yet due when the queue stopped;
	// CopiesSkipped those of packets copied in part (see CopyRange).
	CopiesSent, CopiesFailed, CopiesCancelled, CopiesSkipped uint64
	// ResetsSent counts the RSTs of reset actions sent; ResetsFailed
	// those the raw socket refused.
	ResetsSent, ResetsFailed uint64
	// Healed counts the blackholes whose connections' marks were cleared
	// when their time ran out; HealsFailed those that could not be
	// (conntrack refused, or too many were waiting): those connections
	// stay dark in the kernel.
	Healed, HealsFailed uint64
	// DecodeFailures counts packets that were not IPv4/IPv6 TCP or were
	// malformed; they were accepted without the Handler.
	DecodeFailures uint64
	// HandlerPanics counts Handler calls that panicked; a packet whose
	// Handle panicked was accepted.
	HandlerPanics uint64
	// VerdictErrors and ReadErrors count failed netlink sends and
	// receives.
	VerdictErrors, ReadErrors uint64
	// VerdictLatency is the histogram of Options.TimeVerdicts (empty
	// without it).
	VerdictLatency Latency
	// Kernel is the kernel's view of the queue (once Run has returned,
	// the last one read before the queue closed); KernelErr says why it is missing, if it is.
	Kernel    KernelStats
	KernelErr error
}

// Unreceived returns how many packets the kernel queued for us that we
// never read: Kernel.IDSequence - Received. With fail-open the kernel lets
// them pass unseen when our socket is full (only the difference shows it);
// packets that find the queue itself full pass unseen and uncounted.
func (s Stats) Unreceived() uint64 {
	if s.KernelErr != nil {
		return 0
	}
	return uint64(s.Kernel.IDSequence - uint32(s.Received))
}

// Queued returns how many packets the kernel queued for us since the
// queue was bound: Received + Unreceived, which, unlike
// Kernel.IDSequence, does not wrap at 2^32 (0 when KernelErr is set).
func (s Stats) Queued() uint64 {
	if s.KernelErr != nil {
		return 0
	}
	return s.Received + s.Unreceived()
}

// KernelStats is one queue's line in /proc/net/netfilter/nfnetlink_queue.
type KernelStats struct {
	// PortID is the netlink port bound to the queue.
	PortID uint32
	// Waiting is how many packets await a verdict (held ones included).
	Waiting uint32
	// CopyMode and CopyRange are the queue's copy settings.
	CopyMode  uint8
	CopyRange uint32
	// QueueDropped counts packets dropped because the queue was full
	// (never with fail-open); UserDropped those the kernel failed to
	// send to the socket without fail-open.
	QueueDropped, UserDropped uint32
	// IDSequence is the last packet id handed out: how many packets the
	// queue sent since it was bound (modulo 2^32).
	IDSequence uint32
}

// errNoKernelLine: the queue is not in the kernel's list.
var errNoKernelLine = errors.New("queue not in " + procQueues)

// Stats returns the queue's counters and the kernel's view of it. It is
// safe to call from any goroutine, also after Run has returned.
func (q *Queue) Stats() Stats {
	c, x := &q.core.c, q.core.x.Stats()
	s := Stats{
		Received: c.received.Load(), Accepted: c.accepted.Load(), Dropped: c.dropped.Load(),
		Delayed: x.Delayed, Held: x.Held, Duplicated: x.Duplicated,
		CopiesSent: x.CopiesSent, CopiesFailed: x.CopiesFailed,
		CopiesCancelled: x.CopiesCancelled, CopiesSkipped: x.CopiesSkipped,
		ResetsSent: c.resetsSent.Load(), ResetsFailed: c.resetsFailed.Load(),
		Healed: c.healed.Load(), HealsFailed: c.healsFailed.Load(),
		DecodeFailures: c.decodeFailures.Load(), HandlerPanics: c.handlerPanics.Load(),
		VerdictErrors: c.verdictErrors.Load(), ReadErrors: c.readErr.Load(),
		VerdictLatency: q.latency.snapshot(),
	}
	q.snapshotKernel()
	q.procMu.Lock()
	s.Kernel, s.KernelErr = q.lastKernel, q.kernelErr
	q.procMu.Unlock()
	return s
}

// snapshotKernel refreshes the kernel's view while the list is open.
func (q *Queue) snapshotKernel() {
	q.procMu.Lock()
	defer q.procMu.Unlock()
	if q.proc == nil {
		return
	}
	ks, err := q.kernelLine()
	if err != nil {
		q.kernelErr = err
		return
	}
	q.lastKernel, q.kernelErr = ks, nil
}

// kernelLine reads the queue's line in the kernel's list; q.procMu is held.
func (q *Queue) kernelLine() (KernelStats, error) {
	if _, err := q.proc.Seek(0, io.SeekStart); err != nil {
		return KernelStats{}, fmt.Errorf("read %s: %w", procQueues, err)
	}
	data, err := io.ReadAll(q.proc)
	if err != nil {
		return KernelStats{}, fmt.Errorf("read %s: %w", procQueues, err)
	}
	ks, ok := parseKernelStats(data, q.opts.Queue)
	if !ok {
		return KernelStats{}, errNoKernelLine
	}
	return ks, nil
}

// parseKernelStats finds queue's line in the contents of
// /proc/net/netfilter/nfnetlink_queue: "queue_num peer_portid queue_total
// copy_mode copy_range queue_dropped user_dropped id_sequence 1".
func parseKernelStats(data []byte, queue uint16) (KernelStats, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		var v [8]uint64
		bad := false
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 32)
			if err != nil {
				bad = true
				break
			}
			v[i] = n
		}
		if bad || v[0] != uint64(queue) {
			continue
		}
		return KernelStats{
			PortID: uint32(v[1]), Waiting: uint32(v[2]), CopyMode: uint8(v[3]), CopyRange: uint32(v[4]),
			QueueDropped: uint32(v[5]), UserDropped: uint32(v[6]), IDSequence: uint32(v[7]),
		}, true
	}
	return KernelStats{}, false
}
