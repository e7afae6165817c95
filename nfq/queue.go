//go:build linux

package nfq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// readTimeout bounds a blocking read, so that the reader sees the queue
// closing.
const readTimeout = 100 * time.Millisecond

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
	ct   *ctnetlink // with Options.Blackhole: heals blackholes

	ran     atomic.Bool // Run was called
	closing atomic.Bool // the reader stops; read errors then are expected

	// latency is the verdicts' histogram (Options.TimeVerdicts).
	latency latencyHistogram

	procMu     sync.Mutex
	proc       *os.File // this namespace's /proc/net/netfilter/nfnetlink_queue
	lastKernel KernelStats
	kernelErr  error
}

// procQueues lists the kernel's queues. thread-self, not self: a network
// namespace belongs to a thread, and the caller may have entered one.
const procQueues = "/proc/thread-self/net/netfilter/nfnetlink_queue"

// Open binds NFQUEUE queue opts.Queue in the network namespace of the
// calling thread for h: from then on every packet queued there waits for
// Run to hand it to h. It asks for fail-open (packets pass when the queue
// is full) and GSO packets (no segmentation before queueing), raises the
// receive buffer and disables ENOBUFS reports. The raw sockets for copies
// are opened here too, in the same namespace, marked with InjectMark, and
// with Options.Blackhole conntrack's netlink socket that heals blackholes.
//
// Call Run next: it owns the queue's life from then on, to the end. Open
// needs CAP_NET_ADMIN and CAP_NET_RAW; when the queue number is already
// bound elsewhere the error wraps ErrQueueInUse.
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
	var hs *heals
	if q.opts.Blackhole {
		if q.ct, err = openCtnetlink(); err != nil {
			return err
		}
		hs = &heals{ct: q.ct}
	}
	w := newVerdictWriter(q.opts.Queue, fdKernel{q.fd})
	if q.opts.TimeVerdicts {
		w.latency = &q.latency
	}
	q.core = newCore(h, decode.NewParser(), w, q.inj, q.opts.Quiet, hs, q.log, q.opts.Tap)
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

// Run reads the queue and carries out the Handler's verdicts until ctx is
// done, then closes the queue; it owns the queue's whole life, and may be
// called once. A queue that is not wanted after all (another failed to
// open) is closed the same way, by Run with a context that is done.
//
// The reader is a goroutine locked to its OS thread, blocked in recvfrom
// (no wake-up through the Go scheduler per packet); it handles what the
// socket holds, then writes the verdicts. A timer goroutine releases held
// packets and sends copies when due, and runs the Handler's Expire.
//
// When ctx is done, Run releases every packet still held (accept, then
// Deliver) and cancels the copies not yet sent; the reader then reads the
// socket dry and accepts what it finds without the Handler (the kernel
// would drop unread packets at unbind), and the queue is unbound and its
// sockets closed. Remove the rules that feed the queue before ending Run,
// so that nothing arrives after.
func (q *Queue) Run(ctx context.Context) error {
	if !q.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("run queue %d: already run", q.opts.Queue)
	}
	var reader, timer sync.WaitGroup
	reader.Go(q.read)
	timer.Go(func() { q.core.schedule(ctx, time.Now) })
	timer.Wait() // until ctx is done
	q.closing.Store(true)
	q.core.stop(time.Now())
	reader.Wait()      // within readTimeout
	q.snapshotKernel() // the queue's line leaves the kernel list on unbind
	if err := q.release(); err != nil {
		return fmt.Errorf("close queue %d: %w", q.opts.Queue, err)
	}
	return nil
}

// Number returns the NFQUEUE number the queue is bound to.
func (q *Queue) Number() uint16 { return q.opts.Queue }

// Do calls f serialized with every call into the queue's Handler (its
// packets, releases, copies and expiry), so that f may read or change the
// Handler's state: a snapshot of its tracker, a new rule set. It may be
// called from any goroutine, before, during and after Run. Packets wait
// while f runs: f must not block.
func (q *Queue) Do(f func()) {
	q.core.mu.Lock()
	defer q.core.mu.Unlock()
	f()
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
	if q.ct != nil {
		errs = append(errs, q.ct.close())
	}
	q.procMu.Lock()
	if q.proc != nil {
		errs = append(errs, q.proc.Close())
		q.proc = nil
	}
	q.procMu.Unlock()
	return errors.Join(errs...)
}
