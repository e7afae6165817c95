//go:build linux

package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// tcpchaos's bits in conntrack's connection marks (quiet connections,
// iptables.go; blackholes, dark.go) outlive its rules: a connection quiet
// when a run stopped would bypass the next run's queue until its next
// SYN, FIN or RST, and one dark would be dropped by the next run's DROP
// rules, none of that run's rules having acted on it. So they go with
// the rules (Interception.Remove, Cleanup), and what a killed run left
// goes before the rules of the next one come in (Install).
//
// Clearing reads the table through ctnetlink dumps the kernel filters by
// mark, one a bit (only the entries with that bit set come up to user
// space), and clears the bits of each entry as the dump streams in: an
// update whose CTA_MARK_MASK names tcpchaos's bits only, so that the
// other bits of the mark are the kernel's as they stand at the update
// (markUpdate), not as the dump read them: a bit another program sets
// between the dump and the update is kept, but in the instant of the
// update itself. No rule of tcpchaos's is in place while it clears
// (before Install's rules go in, after Remove's are gone), so no entry
// gets tcpchaos's bits again meanwhile, and one the dump's walk missed
// (created behind it) has none. A table of a million entries
// without tcpchaos's bits costs five walks of the table in the kernel; a
// million entries with them a million updates, sent in batches (one a
// datagram of the dump). Measured on 2 vCPUs (TestClearConnMarksTiming,
// and with its sizes raised): 10,000 marked entries of 20,000 in 0.1 s,
// 100,000 of 200,000 in 0.7 s (2.3 s with other tests running), 1,000 of
// 200,000 in 0.3 s (the five walks). clearTimeout bounds the whole.

// ConnMarks are tcpchaos's bits of the connection mark, those Install,
// Remove and Cleanup clear; packets and connections of other programs
// may use the others.
const ConnMarks = QuietMark | EndingMark | FinalMark | DarkOriginalMark | DarkReplyMark

// clearTimeout bounds clearConnMarks: past it the entries not reached
// yet keep their bits, and the error says so.
const clearTimeout = 30 * time.Second

// maxClearErrs bounds the update errors clearConnMarks keeps: past them
// it counts.
const maxClearErrs = 3

// ErrMarksLeft: the rules are in place (Install) or gone (Remove,
// Cleanup), but tcpchaos's bits could not be cleared from some conntrack
// entries' marks. It is a warning: only connections that already existed
// can carry the bits (a quiet one until its next SYN, FIN or RST; a dark
// one stays dark).
var ErrMarksLeft = errors.New("tcpchaos's bits are left in some conntrack connection marks")

// withMarks joins err, the failures of the rules, and marks, those of
// clearConnMarks: marks is a warning (ErrMarksLeft) only when it is the
// only failure.
func withMarks(err, marks error) error {
	if marks == nil || err != nil {
		return errors.Join(err, marks)
	}
	return fmt.Errorf("%w: %w", ErrMarksLeft, marks)
}

// clearConnMarks clears tcpchaos's bits (ConnMarks) from the mark of every
// TCP connection conntrack holds in the calling thread's network
// namespace, IPv4 and IPv6 and every zone, keeping the other bits. An
// entry gone between the dump and its update is no error.
func clearConnMarks() error {
	deadline := time.Now().Add(clearTimeout)
	dump, err := openNetfilter()
	if err != nil {
		return fmt.Errorf("clear conntrack marks: %w", err)
	}
	defer dump.close()
	upd, err := openNetfilter()
	if err != nil {
		return fmt.Errorf("clear conntrack marks: %w", err)
	}
	defer upd.close()
	var errs []error
	failed := 0
	update := func(es []ctEntry) error {
		return upd.updateMarks(es, deadline, func(e ctEntry, err error) {
			if failed++; failed <= maxClearErrs {
				errs = append(errs, fmt.Errorf("%s->%s: %w", e.src, e.dst, err))
			}
		})
	}
	for m := ConnMarks; m != 0; m &= m - 1 {
		bit := uint32(1) << bits.TrailingZeros32(m)
		if err := dump.dumpMarked(bit, deadline, update); err != nil {
			errs = append(errs, fmt.Errorf("connections with mark bit %s: %w", hex(bit), err))
			break
		}
	}
	if failed > maxClearErrs {
		errs = append(errs, fmt.Errorf("and %d more connections", failed-maxClearErrs))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clear conntrack marks: %w", err)
	}
	return nil
}

// nlSocket is a blocking NETLINK_NETFILTER socket that tcpchaos reads
// and writes itself, for the bulk of clearConnMarks: mdlayher/netlink's
// Receive gathers a whole dump before it returns (for a large table,
// every entry in memory at once), and its round trip through the Go
// netpoller cost about 110 µs an update where a blocking one costs 3 and
// an update in a batch well under 1 (2 vCPUs, measured: 10,000 entries
// took 1.75 s through mdlayher/netlink).
type nlSocket struct {
	fd  int
	seq uint32
	buf []byte
	es  []ctEntry
}

// nlBuffer is the receive buffer of a socket: the kernel fills a dump's
// datagrams up to 32 KiB (netlink_dump).
const nlBuffer = 64 << 10

// openNetfilter opens an nlSocket in the calling thread's network
// namespace. Errors of the kernel carry no copy of the request
// (NETLINK_CAP_ACK): a batch's errors fit the socket's buffer.
func openNetfilter() (*nlSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("open conntrack netlink socket: %w", err)
	}
	s := &nlSocket{fd: fd, buf: make([]byte, nlBuffer)}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		s.close()
		return nil, fmt.Errorf("bind conntrack netlink socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1); err != nil {
		s.close()
		return nil, fmt.Errorf("conntrack netlink socket: set NETLINK_CAP_ACK: %w", err)
	}
	return s, nil
}

func (s *nlSocket) close() { unix.Close(s.fd) }

// send frames each body as a ctnetlink request of type typ (numbered
// from the socket's next sequence number) and writes them all at once;
// flags are those of every message, ack those of the last one on top.
// It returns the first message's sequence number.
func (s *nlSocket) send(typ, flags, ack uint16, bodies ...[]byte) (uint32, error) {
	var b []byte
	first := s.seq + 1
	for i, body := range bodies {
		s.seq++
		f := unix.NLM_F_REQUEST | flags
		if i == len(bodies)-1 {
			f |= ack
		}
		b = binary.NativeEndian.AppendUint32(b, uint32(nlmsgHdrLen+len(body)))
		b = binary.NativeEndian.AppendUint16(b, nfnlSubsysCtnetlink<<8|typ)
		b = binary.NativeEndian.AppendUint16(b, uint16(f))
		b = binary.NativeEndian.AppendUint32(b, s.seq)
		b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel fills it in
		b = append(b, body...)
		b = append(b, make([]byte, align4(len(b))-len(b))...)
	}
	if err := unix.Sendto(s.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("send: %w", err)
	}
	return first, nil
}

// errGaveUp: clearTimeout passed.
var errGaveUp = fmt.Errorf("gave up after %s", clearTimeout)

// recv reads one datagram, waiting until deadline at most. A signal
// interrupts a read with a receive timeout whatever SA_RESTART says
// (signal(7)): the read is made again, until deadline.
func (s *nlSocket) recv(deadline time.Time) ([]byte, error) {
	var (
		n     int
		flags int
		err   error
	)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, errGaveUp
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return nil, fmt.Errorf("set receive timeout: %w", err)
		}
		if n, _, flags, _, err = unix.Recvmsg(s.fd, s.buf, nil, 0); !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if errors.Is(err, unix.EAGAIN) {
		return nil, errGaveUp
	}
	if err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	if flags&unix.MSG_TRUNC != 0 {
		return nil, errors.New("receive: a message longer than the buffer")
	}
	return s.buf[:n], nil
}

// dumpMarked dumps the conntrack entries of both families whose mark has
// bit set, calling each on the entries of every datagram as it comes in,
// until the dump ends or deadline passes.
func (s *nlSocket) dumpMarked(bit uint32, deadline time.Time, each func([]ctEntry) error) error {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	// The kernel's filter: mark & CTA_MARK_MASK == CTA_MARK.
	ae.Uint32(ctaMark, bit)
	ae.Uint32(ctaMarkMask, bit)
	attrs, _ := ae.Encode() // two fixed-size attributes always encode
	// nfgenmsg: family (AF_UNSPEC: both), version, resource id.
	if _, err := s.send(ipctnlMsgCtGet, unix.NLM_F_DUMP, 0, append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, attrs...)); err != nil {
		return err
	}
	for {
		b, err := s.recv(deadline)
		if err != nil {
			return err
		}
		s.es = s.es[:0]
		done := false
		err = eachMessage(b, func(typ uint16, _ uint32, body []byte) (bool, error) {
			switch typ {
			case unix.NLMSG_DONE:
				done = true
				return false, nil
			case unix.NLMSG_ERROR:
				return false, nlError(body)
			}
			e, err := parseEntry(body)
			if err == nil && e.tcp { // tcpchaos's rules mark TCP connections only
				s.es = append(s.es, e)
			}
			return err == nil, err
		})
		if err == nil && len(s.es) > 0 {
			err = each(s.es)
		}
		if done || err != nil {
			return err
		}
	}
}

// updateMarks clears ConnMarks from the marks of es in one write, the last
// update asking for an acknowledgement, and reads the kernel's answer up
// to it: failed is called on each entry the kernel could not update but
// for those it no longer holds.
func (s *nlSocket) updateMarks(es []ctEntry, deadline time.Time, failed func(ctEntry, error)) error {
	bodies := make([][]byte, len(es))
	for i, e := range es {
		bodies[i] = markUpdate(e.src, e.dst, e.zone, ConnMarks)
	}
	first, err := s.send(ipctnlMsgCtNew, 0, unix.NLM_F_ACK, bodies...)
	if err != nil {
		return err
	}
	for {
		b, err := s.recv(deadline)
		if err != nil {
			return err
		}
		last := false
		err = eachMessage(b, func(typ uint16, seq uint32, body []byte) (bool, error) {
			if typ != unix.NLMSG_ERROR || seq < first || seq > s.seq {
				return true, nil // not an answer to this batch
			}
			last = seq == s.seq
			if err := nlError(body); err != nil && !isNoEntry(err) {
				failed(es[seq-first], err)
			}
			return !last, nil
		})
		if last || err != nil {
			return err
		}
	}
}

// eachMessage calls fn on the netlink messages of a datagram with their
// type, sequence number and body, while it returns true.
func eachMessage(b []byte, fn func(typ uint16, seq uint32, body []byte) (bool, error)) error {
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b))
		if l < nlmsgHdrLen || l > len(b) {
			return errors.New("malformed netlink message")
		}
		more, err := fn(binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint32(b[8:]), b[nlmsgHdrLen:l])
		if !more || err != nil {
			return err
		}
		b = b[min(align4(l), len(b)):]
	}
	return nil
}

// nlError returns the errno of an NLMSG_ERROR body, nil for an
// acknowledgement.
func nlError(body []byte) error {
	if len(body) < 4 {
		return errors.New("malformed netlink error")
	}
	if errno := -int32(binary.NativeEndian.Uint32(body)); errno != 0 {
		return unix.Errno(errno)
	}
	return nil
}

// ctEntry is what clearConnMarks reads of a conntrack entry: its original
// tuple, whether it is TCP, its zone and its mark.
type ctEntry struct {
	src, dst netip.AddrPort
	tcp      bool
	zone     ctZone
	mark     uint32
}

// parseEntry reads a conntrack entry from a message of a dump (nfgenmsg,
// then attributes).
func parseEntry(data []byte) (ctEntry, error) {
	var e ctEntry
	if len(data) < 4 {
		return e, fmt.Errorf("conntrack message of %d bytes", len(data))
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return e, fmt.Errorf("conntrack message: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleOrig:
			ad.Nested(e.decodeTuple)
		case ctaZone:
			if !e.zone.origOnly {
				e.zone = ctZone{id: ad.Uint16()}
			}
		case ctaMark:
			e.mark = ad.Uint32()
		}
	}
	if err := ad.Err(); err != nil {
		return e, fmt.Errorf("conntrack message: %w", err)
	}
	return e, nil
}

// decodeTuple reads a tuple as encodeTuple writes it.
func (e *ctEntry) decodeTuple(t *netlink.AttributeDecoder) error {
	var src, dst netip.Addr
	var sport, dport uint16
	for t.Next() {
		switch t.Type() {
		case ctaTupleIP:
			t.Nested(func(ip *netlink.AttributeDecoder) error {
				for ip.Next() {
					a, _ := netip.AddrFromSlice(ip.Bytes())
					switch ip.Type() {
					case ctaIPv4Src, ctaIPv6Src:
						src = a
					case ctaIPv4Dst, ctaIPv6Dst:
						dst = a
					}
				}
				return nil
			})
		case ctaTupleZone:
			e.zone = ctZone{id: t.Uint16(), origOnly: true}
		case ctaTupleProto:
			t.Nested(func(p *netlink.AttributeDecoder) error {
				for p.Next() {
					switch p.Type() {
					case ctaProtoNum:
						e.tcp = p.Uint8() == unix.IPPROTO_TCP
					case ctaProtoSrcPort:
						sport = p.Uint16()
					case ctaProtoDstPort:
						dport = p.Uint16()
					}
				}
				return nil
			})
		}
	}
	e.src, e.dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return nil
}
