//go:build linux

package nfq

import (
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// verdictEntry is one verdict waiting in a verdictWriter.
type verdictEntry struct {
	id      uint32
	verdict uint32
	// mark is the packet's new mark when setMark; quiet adds QuietMark
	// when the writer is flushed with quiet allowed.
	mark    uint32
	setMark bool
	quiet   bool
	// anchor: the entry is quiet and one of a quiet close
	// (rules.Verdict.Closing). After a connection's first FIN the kernel
	// takes the quiet bit from that FIN's verdict only, and any later
	// verdict without it clears it (see iptables.go): a later verdict of
	// the connection cannot carry it in this one's stead.
	anchor bool
	// conn is the packet's connection (0: none known).
	conn uint64
	// read is when the packet was read from the queue, for a verdict
	// given on reading it (zero for a held packet's release).
	read time.Time
}

// finalMark returns the mark an entry's verdict carries.
func (e *verdictEntry) finalMark(quietOK bool) uint32 {
	if e.quiet && quietOK {
		return e.mark | QuietMark
	}
	return e.mark
}

// kernel is where verdict messages go: the queue's netlink socket, or a
// test's fake. One Write may hold several messages.
type kernel interface {
	Write(b []byte) (int, error)
}

// verdictWriter collects the verdicts of a burst of packets and writes
// them in one message buffer, reused: consecutive accepts with the same
// mark become one NFQNL_MSG_VERDICT_BATCH (which accepts every packet
// still queued up to an id) when nothing else is waiting for a verdict;
// every other verdict is an NFQNL_MSG_VERDICT of its own. Entries go out
// in the order they were added.
type verdictWriter struct {
	queue   uint16
	out     kernel
	entries []verdictEntry
	buf     []byte
	// quieted lists the connections whose QuietMark the last flush wrote,
	// declined those of the quiet entries it wrote without (the burst
	// had not read the queue dry, or the write failed).
	quieted, declined []uint64
	// laterMin[i] is the least id of entries[i:] (flush's scratch).
	laterMin [maxBurst + 1]uint32
	// latency, if not nil, records for each verdict with a read time how
	// long after it the write that carried the verdict returned.
	latency *latencyHistogram
}

// maxBurst bounds the verdicts a writer collects before it must flush.
const maxBurst = 128

func newVerdictWriter(queue uint16, out kernel) *verdictWriter {
	return &verdictWriter{
		queue:    queue,
		out:      out,
		entries:  make([]verdictEntry, 0, maxBurst),
		quieted:  make([]uint64, 0, maxBurst),
		declined: make([]uint64, 0, maxBurst),
		buf:      make([]byte, 0, maxBurst*(verdictMsgLen+markAttrLen)),
	}
}

// full reports whether the writer must be flushed before the next add.
func (w *verdictWriter) full() bool { return len(w.entries) == cap(w.entries) }

// add collects one verdict. A quiet entry of the same connection collected
// earlier loses its quiet: only the connection's last packet in a burst
// may let the rest of its packets bypass the queue, or a packet still
// waiting in the queue would be overtaken. When e is quiet it carries the
// connection's quiet in their stead, except for anchors (a quiet close's
// entries), which keep their quiet (no later verdict can carry it): then
// the packets let bypass between the first anchor's verdict and e's,
// which follows it in the same write, may overtake e's packet, as a
// packet may overtake any verdict's (see QuietMark). When e is not quiet,
// the earlier quiet is declined: add reports so. The caller flushes when
// full.
func (w *verdictWriter) add(e verdictEntry) (declined bool) {
	if e.conn != 0 {
		for i := range w.entries {
			if q := &w.entries[i]; q.conn == e.conn && q.quiet && !(e.quiet && q.anchor) {
				q.quiet = false
				declined = declined || !e.quiet
			}
		}
	}
	w.entries = append(w.entries, e)
	return declined
}

// flush writes the collected verdicts in one buffer and forgets them.
// quietOK lets quiet entries carry QuietMark (the burst read the socket
// dry); batchOK allows batch verdicts (no packet is held in the kernel
// queue awaiting a later verdict, which a batch would release).
//
// A batch accepts every packet still waiting up to its last id, so a run
// of accepts becomes one only while its ids rise and no entry after it
// has a lower id: then every packet it covers is its own or was given its
// verdict already (or was never read: with fail-open the kernel let it
// pass).
func (w *verdictWriter) flush(quietOK, batchOK bool) error {
	if len(w.entries) == 0 {
		return nil
	}
	b := w.buf[:0]
	es := w.entries
	w.quieted, w.declined = w.quieted[:0], w.declined[:0]
	w.laterMin[len(es)] = ^uint32(0)
	for i := len(es) - 1; i >= 0; i-- {
		w.laterMin[i] = min(es[i].id, w.laterMin[i+1])
	}
	for i := 0; i < len(es); i++ {
		e := &es[i]
		mark := e.finalMark(quietOK)
		last := i
		if batchOK && e.verdict == verdictAccept {
			for last+1 < len(es) && es[last+1].verdict == verdictAccept && es[last+1].id > es[last].id &&
				es[last+1].setMark == e.setMark && es[last+1].finalMark(quietOK) == mark {
				last++
			}
			for last > i && w.laterMin[last+1] < es[last].id {
				last--
			}
		}
		b = appendVerdict(b, w.queue, es[last].id, e.verdict, mark, e.setMark, last > i)
		for _, q := range es[i : last+1] { // every entry of a batch has the same mark
			switch {
			case q.conn == 0 || !q.quiet:
			case mark&QuietMark != 0:
				w.quieted = append(w.quieted, q.conn)
			default:
				w.declined = append(w.declined, q.conn)
			}
		}
		i = last
	}
	w.buf = b
	w.entries = w.entries[:0]
	if _, err := w.out.Write(b); err != nil {
		w.declined, w.quieted = append(w.declined, w.quieted...), w.quieted[:0]
		return fmt.Errorf("write %d verdicts: %w", len(es), err)
	}
	if w.latency != nil {
		written := time.Now()
		for i := range es {
			if !es[i].read.IsZero() {
				w.latency.observe(written.Sub(es[i].read))
			}
		}
	}
	return nil
}

// Verdicts as the kernel numbers them (NF_DROP, NF_ACCEPT).
const (
	verdictDrop   = 0
	verdictAccept = 1
)

// appendVerdict appends one verdict message: for packet id, or with batch
// for every packet still queued up to id.
func appendVerdict(b []byte, queue uint16, id, verdict, mark uint32, setMark, batch bool) []byte {
	n := verdictMsgLen
	if setMark {
		n += markAttrLen
	}
	typ := msgType(nfqnlMsgVerdict)
	if batch {
		typ = msgType(nfqnlMsgVerdictBatch)
	}
	b = binary.NativeEndian.AppendUint32(b, uint32(n))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST)
	b = binary.NativeEndian.AppendUint32(b, 0) // sequence
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel
	b = append(b, unix.AF_UNSPEC, unix.NFNETLINK_V0)
	b = binary.BigEndian.AppendUint16(b, queue)
	b = binary.NativeEndian.AppendUint16(b, nlattrLen+8)
	b = binary.NativeEndian.AppendUint16(b, nfqaVerdictHdr)
	b = binary.BigEndian.AppendUint32(b, verdict)
	b = binary.BigEndian.AppendUint32(b, id)
	if setMark {
		b = binary.NativeEndian.AppendUint16(b, markAttrLen)
		b = binary.NativeEndian.AppendUint16(b, nfqaMark)
		b = binary.BigEndian.AppendUint32(b, mark)
	}
	return b
}

// fdKernel writes verdicts to the queue's socket.
type fdKernel struct{ fd int }

// Write writes b, not empty, in one write(2), made around the Go
// scheduler's bookkeeping of system calls (RawSyscall). The write does not
// sleep: netlink hands the message to the kernel at once, and the kernel
// carries out every verdict before it returns. It may take tens of
// microseconds, though (each accepted packet goes on its way, often
// through the peers' TCP in a softirq): as a system call of the
// scheduler's, one that outlasted sysmon's 20 µs tick lost its P to
// another thread whenever goroutines waited to run or no other P was
// idle, and the reader slept on return until it got a P back. Now the
// reader keeps its P through the write (a goroutine it woke runs on
// another P, or after the write). Measured with bench's workloads: its
// voluntary context switches per crossing 0.18 -> 0.10 (bulk) and 0.20 ->
// 0.13 (short connections), CPU per crossing x0.95 and x0.92 (README,
// "What bounds the live figures").
func (k fdKernel) Write(b []byte) (int, error) {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(k.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case unix.EINTR:
			continue
		case 0:
			return int(n), nil
		}
		return int(n), e
	}
}
