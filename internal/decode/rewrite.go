package decode

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Layout says where the headers of a whole IPv4 or IPv6 TCP packet lie.
// Only DecodeLayout makes one; a Layout describes the packet it was made
// from (or a packet with the same headers) and no other.
type Layout struct {
	v6      bool
	tcp     int // offset of the TCP header: the IP header's length
	payload int // offset of the TCP payload
	end     int // the packet's length by its IP header
}

// DecodeLayout decodes pkt, a whole IPv4 or IPv6 TCP packet that is to be
// rewritten (sent again), into seg and returns where its headers lie. It
// is Decode, and it also refuses what FixChecksums and Split cannot
// rewrite: a packet whose payload is cut short is ErrTruncated, a packet
// with IPv6 extension headers ErrUnsupported, and every error of Decode
// other than ErrTruncated is wrapped with ErrUnsupported too. Bytes past
// the IP length (link-layer padding) are not part of the packet. On error
// seg is left unchanged.
func (p *Parser) DecodeLayout(pkt []byte, seg *statetrack.Segment) (Layout, error) {
	var s statetrack.Segment
	l, err := p.decode(pkt, len(pkt), &s)
	switch {
	case err == nil:
	case errors.Is(err, ErrTruncated):
		return Layout{}, err
	default:
		return Layout{}, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	if l.end > len(pkt) {
		return Layout{}, fmt.Errorf("%w: ip length %d, %d bytes captured", ErrTruncated, l.end, len(pkt))
	}
	if l.v6 && l.tcp != ipv6Header {
		return Layout{}, fmt.Errorf("%w: ipv6 extension headers (%d bytes)", ErrUnsupported, l.tcp-ipv6Header)
	}
	*seg = s
	return l, nil
}

// Split prepares pkt, laid out as l, for sending on a path whose MTU is
// mtu: a packet that fits is returned alone, otherwise (a GSO
// super-packet) its payload is split into segments of at most mtu minus
// the IP and TCP headers, as TSO would: every segment repeats the headers
// (TCP options included), its sequence number advances by the bytes before
// it, IPv4 identifiers count up from the original's, FIN and PSH stay on
// the last segment only and CWR on the first only. Every returned packet
// has its lengths and checksums set (FixChecksums). pkt is not modified;
// the result never aliases it. An mtu too small for the headers is
// ErrUnsupported.
func (l Layout) Split(pkt []byte, mtu int) ([][]byte, error) {
	hdr := l.payload
	payload := pkt[hdr:l.end]
	mss := mtu - hdr
	switch {
	case l.end <= mtu:
		mss = max(len(payload), 1) // one segment: the packet as it is
	case mss <= 0:
		return nil, fmt.Errorf("%w: mtu %d leaves no room after %d header bytes", ErrUnsupported, mtu, hdr)
	}
	n := max((len(payload)+mss-1)/mss, 1)
	out := make([][]byte, 0, n)
	seq := binary.BigEndian.Uint32(pkt[l.tcp+4:])
	var id uint16
	if !l.v6 {
		id = binary.BigEndian.Uint16(pkt[4:6])
	}
	flags := statetrack.Flags(pkt[l.tcp+13])
	for i := range n {
		chunk := payload[i*mss : min((i+1)*mss, len(payload))]
		seg := make([]byte, hdr+len(chunk))
		copy(seg, pkt[:hdr])
		copy(seg[hdr:], chunk)
		if l.v6 {
			binary.BigEndian.PutUint16(seg[4:6], uint16(len(seg)-ipv6Header))
		} else {
			binary.BigEndian.PutUint16(seg[2:4], uint16(len(seg)))
			binary.BigEndian.PutUint16(seg[4:6], id+uint16(i))
		}
		binary.BigEndian.PutUint32(seg[l.tcp+4:], seq+uint32(i*mss))
		f := flags
		if i < n-1 {
			f &^= statetrack.FIN | statetrack.PSH
		}
		if i > 0 {
			f &^= statetrack.CWR
		}
		seg[l.tcp+13] = byte(f)
		sl := l
		sl.end = len(seg)
		sl.FixChecksums(seg)
		out = append(out, seg)
	}
	return out, nil
}
