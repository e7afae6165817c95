//go:build linux

package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors of the packet rewriting that prepares a copy for injection.
var (
	// ErrUnsupportedPacket is returned for a packet that cannot be
	// re-sent as a copy: not IPv4/IPv6 carrying TCP directly, an IPv4
	// fragment, or an IPv6 packet with extension headers.
	ErrUnsupportedPacket = errors.New("unsupported packet")
	// ErrTruncatedPacket is returned when the headers claim more bytes
	// than the packet holds (for example a packet copied with a short
	// copy range).
	ErrTruncatedPacket = errors.New("truncated packet")
)

const (
	protoTCP      = 6
	ipv4MinHeader = 20
	ipv6Header    = 40
	tcpMinHeader  = 20
)

// layout locates the parts of an IPv4 or IPv6 TCP packet.
type layout struct {
	v6    bool
	ipLen int // IP header length
	tcpAt int // offset of the TCP header (== ipLen)
	thLen int // TCP header length, options included
	total int // bytes of the packet that belong to it (IP length)
}

// parseLayout checks that pkt is a whole IPv4 or IPv6 packet carrying one
// TCP segment and returns where its parts are. A zero IPv4 total length or
// IPv6 payload length (a GSO packet beyond 64 KiB) is taken to mean "the
// whole buffer".
func parseLayout(pkt []byte) (layout, error) {
	var l layout
	if len(pkt) < 1 {
		return l, fmt.Errorf("empty packet: %w", ErrTruncatedPacket)
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < ipv4MinHeader {
			return l, fmt.Errorf("ipv4 header of %d bytes: %w", len(pkt), ErrTruncatedPacket)
		}
		l.ipLen = int(pkt[0]&0x0f) * 4
		if l.ipLen < ipv4MinHeader {
			return l, fmt.Errorf("ipv4 header length %d: %w", l.ipLen, ErrUnsupportedPacket)
		}
		if pkt[9] != protoTCP {
			return l, fmt.Errorf("ipv4 protocol %d: %w", pkt[9], ErrUnsupportedPacket)
		}
		if frag := binary.BigEndian.Uint16(pkt[6:8]); frag&0x3fff != 0 {
			return l, fmt.Errorf("ipv4 fragment: %w", ErrUnsupportedPacket)
		}
		l.total = int(binary.BigEndian.Uint16(pkt[2:4]))
	case 6:
		if len(pkt) < ipv6Header {
			return l, fmt.Errorf("ipv6 header of %d bytes: %w", len(pkt), ErrTruncatedPacket)
		}
		l.v6 = true
		l.ipLen = ipv6Header
		if pkt[6] != protoTCP {
			return l, fmt.Errorf("ipv6 next header %d: %w", pkt[6], ErrUnsupportedPacket)
		}
		if pl := int(binary.BigEndian.Uint16(pkt[4:6])); pl != 0 {
			l.total = ipv6Header + pl
		}
	default:
		return l, fmt.Errorf("ip version %d: %w", pkt[0]>>4, ErrUnsupportedPacket)
	}
	if l.total == 0 {
		l.total = len(pkt)
	}
	l.tcpAt = l.ipLen
	if l.total > len(pkt) || l.total < l.ipLen+tcpMinHeader {
		return l, fmt.Errorf("ip length %d, %d bytes captured: %w", l.total, len(pkt), ErrTruncatedPacket)
	}
	l.thLen = int(pkt[l.tcpAt+12]>>4) * 4
	if l.thLen < tcpMinHeader || l.tcpAt+l.thLen > l.total {
		return l, fmt.Errorf("tcp header length %d in %d bytes: %w", l.thLen, l.total-l.tcpAt, ErrTruncatedPacket)
	}
	return l, nil
}

// FixChecksums recomputes, in place, the IPv4 header checksum (IPv4 only)
// and the TCP checksum of a whole IPv4 or IPv6 TCP packet. Packets handed
// over with the GSO flag may carry a partial TCP checksum (the pseudo-header
// sum only), so any copy that is sent again needs this.
func FixChecksums(pkt []byte) error {
	l, err := parseLayout(pkt)
	if err != nil {
		return fmt.Errorf("fix checksums: %w", err)
	}
	fixChecksums(pkt[:l.total], l)
	return nil
}

func fixChecksums(pkt []byte, l layout) {
	if !l.v6 {
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:12], ^fold(sum(0, pkt[:l.ipLen])))
	}
	tcp := pkt[l.tcpAt:]
	tcp[16], tcp[17] = 0, 0
	var s uint32
	if l.v6 {
		s = sum(0, pkt[8:40]) // source and destination
	} else {
		s = sum(0, pkt[12:20])
	}
	s += protoTCP + uint32(len(tcp)&0xffff) + uint32(len(tcp)>>16)
	binary.BigEndian.PutUint16(tcp[16:18], ^fold(sum(s, tcp)))
}

// sum adds b to the one's complement running sum s, 16 bits at a time
// (big-endian, an odd last byte padded with zero).
func sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		if s >= 1<<31 {
			s = s&0xffff + s>>16
		}
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// fold folds a running sum into 16 bits.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// TCP flag bits in byte 13 of the TCP header.
const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// SegmentPacket prepares a whole IPv4 or IPv6 TCP packet for sending on a
// path whose MTU is mtu: a packet that fits is returned alone, otherwise
// (a GSO super-packet) its payload is split into segments of at most
// mtu minus the IP and TCP headers, as TSO would: every segment repeats
// the headers (TCP options included), its sequence number advances by the
// bytes before it, IPv4 identifiers count up from the original's, FIN and
// PSH stay on the last segment only and CWR on the first only. Every
// returned packet has its lengths and checksums set. pkt is not modified;
// the result never aliases it.
func SegmentPacket(pkt []byte, mtu int) ([][]byte, error) {
	l, err := parseLayout(pkt)
	if err != nil {
		return nil, fmt.Errorf("segment packet: %w", err)
	}
	hdr := l.ipLen + l.thLen
	payload := pkt[hdr:l.total]
	mss := mtu - hdr
	switch {
	case l.total <= mtu:
		mss = max(len(payload), 1) // one segment: the packet as it is
	case mss <= 0:
		return nil, fmt.Errorf("segment packet: mtu %d leaves no room after %d header bytes: %w", mtu, hdr, ErrUnsupportedPacket)
	}
	n := max((len(payload)+mss-1)/mss, 1)
	out := make([][]byte, 0, n)
	seq := binary.BigEndian.Uint32(pkt[l.tcpAt+4:])
	var id uint16
	if !l.v6 {
		id = binary.BigEndian.Uint16(pkt[4:6])
	}
	flags := pkt[l.tcpAt+13]
	for i := 0; i < n; i++ {
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
		binary.BigEndian.PutUint32(seg[l.tcpAt+4:], seq+uint32(i*mss))
		f := flags
		if i < n-1 {
			f &^= tcpFIN | tcpPSH
		}
		if i > 0 {
			f &^= tcpCWR
		}
		seg[l.tcpAt+13] = f
		fixChecksums(seg, l)
		out = append(out, seg)
	}
	return out, nil
}
