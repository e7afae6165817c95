//go:build linux

package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/minheap"
)

// marker clears bits of a connection's conntrack mark: the seam between
// the heals and the kernel.
type marker interface {
	clearMark(src, dst netip.AddrPort, bits uint32) error
}

// maxHeals bounds the blackholes a Queue waits to heal: a rule that
// blackholes a flood of connections for a long time must not grow the
// queue without bound. A heal beyond it is refused and counted: that
// connection stays dark in the kernel (the pipeline lets its packets
// through again).
const maxHeals = 1 << 16

// heal is one blackholed connection to heal at a time.
type heal struct {
	at       time.Time
	src, dst netip.AddrPort
}

// Before orders heals by time (minheap.Ordered).
func (h heal) Before(o heal) bool { return h.at.Before(o.at) }

// heals are a Queue's blackholes with a duration, earliest first; the
// core's mutex guards them.
type heals struct {
	ct marker
	h  minheap.Heap[heal]
	// last holds, for each connection with a heal waiting, when its last
	// blackhole heals (zero: never) and how many of its heals wait: a
	// connection darkened again heals when the last blackhole does, as
	// in the pipeline, and its earlier heals are skipped.
	last map[connKey]lastHeal
}

// connKey names a connection by its packets' addresses, either way.
type connKey struct{ a, b netip.AddrPort }

// keyOf returns the connection of a packet src→dst.
func keyOf(src, dst netip.AddrPort) connKey {
	if src.Compare(dst) > 0 {
		src, dst = dst, src
	}
	return connKey{src, dst}
}

// lastHeal is a connection's entry in heals.last.
type lastHeal struct {
	at      time.Time
	waiting int
}

// add schedules the connection of the packet src→dst to heal at at (zero:
// its last blackhole never heals, which cancels the heals waiting); it
// reports false when maxHeals are waiting.
func (hs *heals) add(at time.Time, src, dst netip.AddrPort) bool {
	k := keyOf(src, dst)
	l, waiting := hs.last[k]
	if at.IsZero() {
		if waiting {
			hs.last[k] = lastHeal{waiting: l.waiting}
		}
		return true
	}
	if len(hs.h) >= maxHeals {
		return false
	}
	if hs.last == nil {
		hs.last = make(map[connKey]lastHeal)
	}
	hs.last[k] = lastHeal{at: at, waiting: l.waiting + 1}
	hs.h.Push(heal{at: at, src: src, dst: dst})
	return true
}

// next returns the earliest heal's time, if one is waiting.
func (hs *heals) next() (time.Time, bool) {
	if len(hs.h) == 0 {
		return time.Time{}, false
	}
	return hs.h[0].at, true
}

// fire heals every connection due by now, and returns how many it healed
// and the errors of those it could not (a connection conntrack forgot in
// the meantime is healed). A heal a later blackhole of its connection
// replaced is skipped.
func (hs *heals) fire(now time.Time) (healed int, errs []error) {
	for len(hs.h) > 0 && !hs.h[0].at.After(now) {
		h := hs.h.Pop()
		k := keyOf(h.src, h.dst)
		l := hs.last[k]
		if l.waiting--; l.waiting == 0 {
			delete(hs.last, k)
		} else {
			hs.last[k] = l
		}
		if !h.at.Equal(l.at) {
			continue
		}
		if err := hs.ct.clearMark(h.src, h.dst, DarkOriginalMark|DarkReplyMark); err != nil {
			errs = append(errs, err)
			continue
		}
		healed++
	}
	return healed, errs
}

// ctnetlink is conntrack's netlink interface (nfnetlink subsystem
// CTNETLINK) in the namespace it was opened in.
type ctnetlink struct{ c *netlink.Conn }

// openCtnetlink opens conntrack's netlink interface in the calling
// thread's network namespace.
func openCtnetlink() (*ctnetlink, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("open conntrack netlink socket: %w", err)
	}
	return &ctnetlink{c: c}, nil
}

// ctnetlink's numbers (linux/netfilter/nfnetlink_conntrack.h).
const (
	nfnlSubsysCtnetlink = 1
	ipctnlMsgCtNew      = 0
	ipctnlMsgCtGet      = 1
	ctaTupleOrig        = 1
	ctaMark             = 8
	ctaZone             = 18
	ctaMarkMask         = 21
	ctaTupleIP          = 1
	ctaTupleProto       = 2
	ctaTupleZone        = 3
	ctaIPv4Src          = 1
	ctaIPv4Dst          = 2
	ctaIPv6Src          = 3
	ctaIPv6Dst          = 4
	ctaProtoNum         = 1
	ctaProtoSrcPort     = 2
	ctaProtoDstPort     = 3
)

// clearMark clears bits of the conntrack mark of the TCP connection with
// a packet src→dst: an update (IPCTNL_MSG_CT_NEW without NLM_F_CREATE)
// that changes only the mark, new mark = (mark &^ bits) ^ 0. Conntrack
// finds an entry by either direction's tuple, which behind NAT the
// packet as tcpchaos saw it need not be (a masqueraded client's: the
// server's packet, translated back, is server→client while the reply
// tuple is server→router); the tuple the other way round is then the
// other direction's. A connection conntrack knows neither way is gone:
// no error.
func (ct *ctnetlink) clearMark(src, dst netip.AddrPort, bits uint32) error {
	err := ct.updateMark(src, dst, bits)
	if isNoEntry(err) {
		err = ct.updateMark(dst, src, bits)
	}
	if err != nil && !isNoEntry(err) {
		return fmt.Errorf("heal %s->%s: update the conntrack mark: %w", src, dst, err)
	}
	return nil
}

// updateMark clears bits of the mark of the conntrack entry with the
// tuple src→dst (clearMark).
func (ct *ctnetlink) updateMark(src, dst netip.AddrPort, bits uint32) error {
	_, err := ct.c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysCtnetlink<<8 | ipctnlMsgCtNew), Flags: netlink.Request | netlink.Acknowledge},
		Data:   markUpdate(src, dst, ctZone{}, bits),
	})
	return err
}

// markUpdate is the body (nfgenmsg, attributes) of the ctnetlink update
// (IPCTNL_MSG_CT_NEW) that clears bits of the mark of the entry with the
// tuple src→dst in conntrack zone zone. The kernel applies the mask to
// the mark as it stands when the update arrives, so the other bits keep
// whatever they hold then; like xt_connmark, it reads and writes the
// mark without an atomic operation, so a CONNMARK rule changing the same
// connection's mark on another CPU in that instant can lose its change
// or this one.
func markUpdate(src, dst netip.AddrPort, zone ctZone, bits uint32) []byte {
	ae := entryEncoder(src, dst, zone)
	ae.Uint32(ctaMark, 0)
	ae.Uint32(ctaMarkMask, bits)
	attrs, _ := ae.Encode() // fixed-size attributes of valid addresses always encode
	family := uint8(unix.AF_INET6)
	if src.Addr().Is4() {
		family = unix.AF_INET
	}
	// nfgenmsg: family, version, resource id (big-endian).
	return append([]byte{family, unix.NFNETLINK_V0, 0, 0}, attrs...)
}

// ctZone is a conntrack entry's zone: its id, and whether it is the
// zone of the original direction only (CT --zone-orig), which the kernel
// names inside the original tuple (CTA_TUPLE_ZONE) instead of as CTA_ZONE.
// The zero value is zone 0.
type ctZone struct {
	id       uint16
	origOnly bool
}

// entryEncoder starts the attributes that name a conntrack entry: its
// original tuple src→dst and, when not 0, its zone, where the kernel
// looks for it (an entry named in another zone is not found).
func entryEncoder(src, dst netip.AddrPort, zone ctZone) *netlink.AttributeEncoder {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Nested(ctaTupleOrig, func(t *netlink.AttributeEncoder) error {
		encodeTuple(t, src, dst)
		if zone.origOnly {
			t.Uint16(ctaTupleZone, zone.id)
		}
		return nil
	})
	if zone.id != 0 && !zone.origOnly {
		ae.Uint16(ctaZone, zone.id)
	}
	return ae
}

// encodeTuple writes the tuple (CTA_TUPLE_IP, CTA_TUPLE_PROTO) of a TCP
// packet src→dst.
func encodeTuple(t *netlink.AttributeEncoder, src, dst netip.AddrPort) {
	t.Nested(ctaTupleIP, func(ip *netlink.AttributeEncoder) error {
		s, d := uint16(ctaIPv6Src), uint16(ctaIPv6Dst)
		if src.Addr().Is4() {
			s, d = ctaIPv4Src, ctaIPv4Dst
		}
		ip.Bytes(s, src.Addr().AsSlice())
		ip.Bytes(d, dst.Addr().AsSlice())
		return nil
	})
	t.Nested(ctaTupleProto, func(p *netlink.AttributeEncoder) error {
		p.Uint8(ctaProtoNum, unix.IPPROTO_TCP)
		p.Uint16(ctaProtoSrcPort, src.Port())
		p.Uint16(ctaProtoDstPort, dst.Port())
		return nil
	})
}

// isNoEntry reports whether conntrack has no such connection (any more).
func isNoEntry(err error) bool {
	return errors.Is(err, unix.ENOENT)
}

func (ct *ctnetlink) close() error { return ct.c.Close() }
