//go:build linux

// Package nfq is tcpchaos's live path: the iptables rules that send TCP
// packets to an NFQUEUE queue (Install), the queue reader that hands each
// packet to the pipeline and carries out its verdict (Open, Queue.Run), and
// the raw-socket Injector that sends the copies of duplicated packets.
//
// Per packet: the reader decodes it into a reused statetrack.Segment,
// calls Handler.Handle and decides its verdict at once (accept, drop, or
// accept with copies scheduled), or holds it (delay). The verdicts of a
// burst of packets (what the socket holds when the reader gets to it) go
// to the kernel in one write, as batch verdicts where they can. One timer
// goroutine per queue releases held packets and sends copies when due.
// Exactly one verdict is given per packet on every path: a packet that
// does not decode or on which the Handler panics is accepted.
//
// The steady-state packet path (receive, parse, decode, track, decide,
// verdict) does not allocate.
package nfq

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/execute"
	"github.com/tcpchaos/tcpchaos/internal/netlab"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Handler is the packet pipeline (tracker + rules + events):
// internal/pipeline's Pipeline is one. A Queue calls it from one goroutine
// at a time: it need not be safe for concurrent use.
type Handler interface {
	// Handle classifies a decoded segment and decides its fate. For
	// accept the pipeline has already delivered the packet.
	Handle(seg *statetrack.Segment, now time.Time) rules.Verdict
	// Deliver reports that a held packet was released, or that one copy
	// of a duplicated packet was sent.
	Deliver(v *rules.Verdict, now time.Time)
	// Quieted reports that connection connID went quiet: a verdict
	// carrying QuietMark for a packet of it (Verdict.Obs.ConnID) was
	// written to the kernel. A Verdict.Quiet the queue could not honour
	// (another packet of the connection was still waiting, or the queue
	// was opened without Options.Quiet) is not reported.
	Quieted(connID uint64, now time.Time)
	// Expire reaps the handler's state over time (the tracker's TIME_WAIT
	// and idle expiry); a running Queue calls it every second.
	Expire(now time.Time)
}

// DefaultSocketBuffer is the netlink receive buffer a Queue asks for by
// default: the kernel's ~208 KiB overflows under load (NFQUEUE-NOTES.md).
const DefaultSocketBuffer = 8 << 20

// HeaderCopyRange is a copy range that holds every header the tracker
// reads: IPv6's 40 bytes, 156 bytes of extension headers and a TCP header
// with 40 bytes of options (60), or IPv4 with options (60) and TCP (60)
// with room to spare. A packet whose headers go beyond it does not decode
// and is accepted without the Handler (Stats.DecodeFailures).
const HeaderCopyRange = 256

// defaultMaxQueueLen is the kernel's default queue length.
const defaultMaxQueueLen = 1024

// recvBufSize holds the largest message the kernel sends: a whole 64 KiB
// packet and its attributes.
const recvBufSize = 1 << 17

// readTimeout bounds a blocking read, so that the reader sees Close.
const readTimeout = 100 * time.Millisecond

// Options configure a Queue. The zero value of each field selects its
// default.
type Options struct {
	// Queue is the NFQUEUE number to bind.
	Queue uint16
	// CopyRange is how many bytes of each packet the kernel copies to us.
	// 0 (the default) copies whole packets, up to the kernel's maximum of
	// 65531 bytes. A short range (HeaderCopyRange: the headers) is much
	// faster for bulk traffic, but a packet copied in part cannot be
	// duplicated: its copies are skipped and counted.
	CopyRange uint32
	// Quiet marks accept verdicts for quiet connections
	// (InstallOptions.Quiet): VerdictMark on each, and QuietMark when the
	// Handler's verdict lets the connection go quiet (Verdict.Quiet).
	Quiet bool
	// MaxQueueLen is how many packets the kernel keeps waiting for a
	// verdict, held packets included; beyond it, packets pass unseen
	// (fail-open). 0 selects the kernel's default, 1024.
	MaxQueueLen uint32
	// SocketBuffer is the netlink receive buffer in bytes, set with
	// SO_RCVBUFFORCE. Default DefaultSocketBuffer.
	SocketBuffer int
	// Poll is how long the reader keeps polling the socket after a burst
	// before it blocks in a read: a packet that comes meanwhile (the
	// SYN-ACK after a SYN, the next packets of a busy queue) is read
	// without the wake-up of a blocked thread, which costs tens of
	// microseconds on a virtual machine. The price is up to Poll of one
	// CPU after each burst. 0 selects DefaultPoll; negative: never poll.
	Poll time.Duration
	// Logger receives the queue's diagnostics. Default: discarded.
	Logger *slog.Logger
}

// DefaultPoll is Options.Poll's default. Measured (bench/, 2 vCPUs):
// connect() time added by the queue at p50, without polling 106-133 µs,
// 100 µs of polling 79-86 µs, 200 µs 68-98 µs with short connections/s
// down by a tenth (the poller takes CPU from the peers).
const DefaultPoll = 100 * time.Microsecond

// Errors of Open.
var (
	// ErrQueueInUse: another netlink socket (another process, or another
	// Queue) is bound to the queue number.
	ErrQueueInUse = errors.New("queue already bound by another socket")
)

// Queue reads one NFQUEUE queue and carries out the Handler's verdicts:
// exactly one verdict per packet, now or, for a delayed packet, when its
// hold expires; copies of duplicated packets go out through an Injector.
//
// Packets are handled on the reader goroutine itself (no hop per packet);
// held packets and copies are released by one timer goroutine per queue.
// A mutex per queue serializes the two around the Handler. Several queues
// share nothing.
type Queue struct {
	opts Options
	log  *slog.Logger
	core *core
	nf   *nfqueue.Nfqueue // until the queue is bound; then nil (detach)
	fd   int              // the bound socket, read and written by tcpchaos itself
	inj  *Injector

	readerDone chan struct{} // closed when the reader returns
	running    atomic.Bool
	closing    atomic.Bool // set before the socket closes: read errors then are expected
	closeOnce  sync.Once
	closeErr   error

	procMu     sync.Mutex
	proc       *os.File // this namespace's /proc/net/netfilter/nfnetlink_queue
	lastKernel KernelStats
	kernelErr  error
}

// procQueues lists the kernel's queues. thread-self, not self: a network
// namespace belongs to a thread, and the caller may have entered one.
const procQueues = "/proc/thread-self/net/netfilter/nfnetlink_queue"

// Open binds NFQUEUE queue opts.Queue in the network namespace of the
// calling thread and starts reading it: from then on every packet queued
// there goes through h. It asks for fail-open (packets pass when the queue
// is full) and GSO packets (no segmentation before queueing), raises the
// receive buffer and disables ENOBUFS reports. The raw sockets for copies
// are opened here too, in the same namespace, marked with InjectMark.
//
// The reader is a goroutine locked to its OS thread, blocked in recvfrom
// (no wake-up through the Go scheduler per packet); it handles what the
// socket holds, then writes the verdicts.
//
// Held packets are released and copies sent only while Run runs; call Run
// next, or Close if it is not to be called. Open needs CAP_NET_ADMIN and
// CAP_NET_RAW; when the queue number is already bound elsewhere the error
// wraps ErrQueueInUse.
func Open(opts Options, h Handler) (*Queue, error) {
	if opts.SocketBuffer == 0 {
		opts.SocketBuffer = DefaultSocketBuffer
	}
	if opts.MaxQueueLen == 0 {
		opts.MaxQueueLen = defaultMaxQueueLen
	}
	if opts.Poll == 0 {
		opts.Poll = DefaultPoll
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("queue", opts.Queue)
	q := &Queue{opts: opts, log: log, fd: -1}
	if err := q.open(h); err != nil {
		q.release()
		return nil, fmt.Errorf("open queue %d: %w", opts.Queue, err)
	}
	return q, nil
}

func (q *Queue) open(h Handler) error {
	var err error
	if q.proc, err = os.Open(procQueues); err != nil {
		return fmt.Errorf("open kernel queue list: %w", err)
	}
	if q.inj, err = NewInjector(InjectMark); err != nil {
		return err
	}
	q.nf, err = nfqueue.Open(&nfqueue.Config{
		NfQueue:      q.opts.Queue,
		MaxPacketLen: q.opts.CopyRange,
		MaxQueueLen:  q.opts.MaxQueueLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		Flags:        nfqueue.NfQaCfgFlagFailOpen | nfqueue.NfQaCfgFlagGSO,
	})
	if err != nil {
		return fmt.Errorf("open netfilter netlink socket: %w", err)
	}
	if err := q.tuneSocket(); err != nil {
		return err
	}
	err = bind(q.nf.Con, bindConfig{
		queue: q.opts.Queue, copyRange: q.opts.CopyRange, maxQueueLen: q.opts.MaxQueueLen,
		flags: nfqueue.NfQaCfgFlagFailOpen | nfqueue.NfQaCfgFlagGSO,
	})
	if err != nil {
		return q.bindError(err)
	}
	if err := q.detach(); err != nil {
		return err
	}
	// From here on the socket is tcpchaos's alone: blocking reads with a
	// timeout, on the reader's own thread.
	if err := unix.SetNonblock(q.fd, false); err != nil {
		return fmt.Errorf("make the socket blocking: %w", err)
	}
	tv := unix.NsecToTimeval(readTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(q.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("set SO_RCVTIMEO: %w", err)
	}
	q.core = newCore(h, decode.NewParser(), newVerdictWriter(q.opts.Queue, fdKernel{q.fd}), q.inj, q.opts.Quiet, q.log)
	q.readerDone = make(chan struct{})
	go q.read()
	return nil
}

// tuneSocket finds the socket's descriptor, raises the netlink receive
// buffer past net.core.rmem_max and turns off ENOBUFS reports (an
// overflow is still counted by the kernel).
func (q *Queue) tuneSocket() error {
	if err := q.nf.Con.SetOption(netlink.NoENOBUFS, true); err != nil {
		return fmt.Errorf("set NETLINK_NO_ENOBUFS: %w", err)
	}
	rc, err := q.nf.Con.SyscallConn()
	if err != nil {
		return fmt.Errorf("get the netlink socket: %w", err)
	}
	if err := rc.Control(func(fd uintptr) { q.fd = int(fd) }); err != nil {
		return fmt.Errorf("get the netlink socket: %w", err)
	}
	if err := unix.SetsockoptInt(q.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, q.opts.SocketBuffer); err != nil {
		return fmt.Errorf("set SO_RCVBUFFORCE to %d: %w", q.opts.SocketBuffer, err)
	}
	return nil
}

// detach takes the bound socket away from go-nfqueue: q.fd becomes a
// duplicate of its descriptor and the netlink connection is closed. The
// binding stays (it belongs to the socket, which the duplicate keeps open),
// and the socket leaves the Go runtime's epoll set: registered there, every
// burst of packets woke an idle runtime thread in epoll_pwait for nothing
// (the reader never waits through the netpoller), a thread wake-up per
// burst taken from the CPUs the traffic's endpoints need.
func (q *Queue) detach() error {
	fd, err := unix.FcntlInt(uintptr(q.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("duplicate the netlink socket: %w", err)
	}
	q.fd = fd
	nf := q.nf
	q.nf = nil
	if err := nf.Close(); err != nil {
		return fmt.Errorf("close the netlink connection: %w", err)
	}
	return nil
}

// bindError explains a failed bind. The kernel answers EPERM both to a
// caller without CAP_NET_ADMIN and to a bind of a queue that another socket
// holds; the capabilities and the kernel's queue list tell the two apart.
func (q *Queue) bindError(err error) error {
	if !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("bind: %w", err)
	}
	if cerr := netlab.CheckNetAdmin(); cerr != nil {
		return fmt.Errorf("bind: %w: %w", cerr, err)
	}
	q.procMu.Lock()
	ks, kerr := q.kernelLine()
	q.procMu.Unlock()
	if kerr != nil {
		return fmt.Errorf("bind: %w", err)
	}
	holder := ""
	if comm, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/comm", ks.PortID)); rerr == nil {
		holder = fmt.Sprintf(", probably process %d (%s)", ks.PortID, strings.TrimSpace(string(comm)))
	}
	return fmt.Errorf("bind: %w (netlink port %d%s): %w", ErrQueueInUse, ks.PortID, holder, err)
}

// read is the reader goroutine: it blocks until the socket holds a
// message, handles every message the socket holds (up to maxBurst), then
// has the burst's verdicts written, until Close.
func (q *Queue) read() {
	defer close(q.readerDone)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, recvBufSize)
	var m packetMsg
	for !q.closing.Load() {
		n, e := q.poll(buf)
		if e == unix.EAGAIN {
			n, e = recvFrom(q.fd, buf, 0)
		}
		if e != 0 {
			if !q.readError(e) {
				return
			}
			continue
		}
		drained := false
		for i := 1; ; i++ {
			q.core.messages(buf[:n], &m, time.Now())
			if i == maxBurst {
				break // not one read more: its message would be lost
			}
			if n, e = recvFrom(q.fd, buf, unix.MSG_DONTWAIT); e != 0 {
				drained = e == unix.EAGAIN
				if !drained {
					q.readError(e)
				}
				break
			}
		}
		q.core.endBurst(drained)
	}
	q.drain(buf, &m)
}

// maxDrain bounds how many messages drain reads.
const maxDrain = 1 << 16

// drain gives a verdict to every message the socket still holds once the
// queue is closing: the kernel would drop them, unread, at unbind. The
// caller removes the rules that feed the queue first, so there is an end
// to them; maxDrain bounds it anyway.
func (q *Queue) drain(buf []byte, m *packetMsg) {
	for range maxDrain {
		n, e := recvFrom(q.fd, buf, unix.MSG_DONTWAIT)
		if e != 0 {
			break
		}
		q.core.messages(buf[:n], m, time.Now())
	}
	q.core.endBurst(false)
}

// poll reads the socket without blocking until a message comes or
// opts.Poll has passed (EAGAIN).
func (q *Queue) poll(buf []byte) (int, unix.Errno) {
	if q.opts.Poll < 0 {
		return 0, unix.EAGAIN
	}
	var deadline time.Time
	for {
		n, e := recvFrom(q.fd, buf, unix.MSG_DONTWAIT)
		if e != unix.EAGAIN {
			return n, e
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(q.opts.Poll)
		} else if now.After(deadline) {
			return 0, e
		}
	}
}

// readError counts a failed read and reports whether the reader goes on:
// a timeout or an interruption is no failure, a closed socket ends it.
func (q *Queue) readError(e unix.Errno) bool {
	switch e {
	case unix.EAGAIN, unix.EINTR:
		return true
	case unix.EBADF:
		return false
	}
	if q.closing.Load() {
		return false
	}
	if n := q.core.c.readErr.Add(1); execute.LogWorthy(n) {
		q.log.Error("read from queue", "errors", n, "err", e)
	}
	return true
}

// Run releases held packets and sends copies when due until ctx is done.
// Then it releases every packet still held (accept, then Deliver), drops
// the copies not yet sent, and closes the queue; packets read meanwhile are
// accepted without the Handler. Run may be called once.
//
// Before unbinding, the reader reads the socket dry and accepts what it
// finds (the kernel would drop unread packets at unbind). Remove the rules
// that feed the queue before ending Run, so that nothing arrives after.
func (q *Queue) Run(ctx context.Context) error {
	if !q.running.CompareAndSwap(false, true) {
		return fmt.Errorf("run queue %d: already run", q.opts.Queue)
	}
	tctx, stopTimers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { q.core.schedule(tctx, time.Now) })
	<-ctx.Done()
	stopTimers()
	wg.Wait()
	return q.Close()
}

// Close stops the queue: it releases the held packets as Run does at its
// end, unbinds the queue and closes the sockets. Run calls it; call it
// directly only when Run is not called. It is safe to call more than once.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.closing.Store(true)
		q.core.stop(time.Now())
		<-q.readerDone     // within readTimeout
		q.snapshotKernel() // the queue's line leaves the kernel list on unbind
		q.closeErr = q.release()
		if q.closeErr != nil {
			q.closeErr = fmt.Errorf("close queue %d: %w", q.opts.Queue, q.closeErr)
		}
	})
	return q.closeErr
}

// release closes whatever open opened.
func (q *Queue) release() error {
	var errs []error
	if q.nf != nil {
		if err := q.nf.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	} else if q.fd >= 0 {
		errs = append(errs, unix.Close(q.fd))
	}
	if q.inj != nil {
		errs = append(errs, q.inj.Close())
	}
	q.procMu.Lock()
	if q.proc != nil {
		errs = append(errs, q.proc.Close())
		q.proc = nil
	}
	q.procMu.Unlock()
	return errors.Join(errs...)
}

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
	// DecodeFailures counts packets that were not IPv4/IPv6 TCP or were
	// malformed; they were accepted without the Handler.
	DecodeFailures uint64
	// HandlerPanics counts Handler calls that panicked; a packet whose
	// Handle panicked was accepted.
	HandlerPanics uint64
	// VerdictErrors and ReadErrors count failed netlink sends and
	// receives.
	VerdictErrors, ReadErrors uint64
	// Kernel is the kernel's view of the queue (the last one read before
	// Close, after it); KernelErr says why it is missing, if it is.
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
// safe to call from any goroutine, also after Close.
func (q *Queue) Stats() Stats {
	c, x := &q.core.c, q.core.x.Stats()
	s := Stats{
		Received: c.received.Load(), Accepted: c.accepted.Load(), Dropped: c.dropped.Load(),
		Delayed: x.Delayed, Held: x.Held, Duplicated: x.Duplicated,
		CopiesSent: x.CopiesSent, CopiesFailed: x.CopiesFailed,
		CopiesCancelled: x.CopiesCancelled, CopiesSkipped: x.CopiesSkipped,
		DecodeFailures: c.decodeFailures.Load(), HandlerPanics: c.handlerPanics.Load(),
		VerdictErrors: c.verdictErrors.Load(), ReadErrors: c.readErr.Load(),
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
