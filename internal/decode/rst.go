package decode

import (
	"encoding/binary"
	"fmt"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// RSTLen is the most bytes AppendRST appends: an IPv6 header and a TCP
// header without options.
const RSTLen = ipv6Header + tcpHeader

// tcpHeader is the length of a TCP header without options.
const tcpHeader = 20

// rstTTL is the TTL (hop limit) of a built RST.
const rstTTL = 64

// AppendRST appends to b the IPv4 or IPv6 packet (by seg.Src's address)
// of seg, a segment without payload or options (an RST), with its
// checksums set, and returns the extended slice. Window and payload are
// not written: an RST carries neither.
func AppendRST(b []byte, seg *statetrack.Segment) []byte {
	start := len(b)
	src, dst := seg.Src.Addr(), seg.Dst.Addr()
	v6 := src.Is6() && !src.Is4In6()
	ipLen := 20
	if v6 {
		ipLen = ipv6Header
	}
	b = append(b, make([]byte, ipLen+tcpHeader)...)
	pkt := b[start:]
	if v6 {
		pkt[0] = 6 << 4
		binary.BigEndian.PutUint16(pkt[4:], tcpHeader)
		pkt[6], pkt[7] = protoTCP, rstTTL
		s, d := src.As16(), dst.As16()
		copy(pkt[8:24], s[:])
		copy(pkt[24:40], d[:])
	} else {
		pkt[0] = 4<<4 | 5
		binary.BigEndian.PutUint16(pkt[2:], uint16(ipLen+tcpHeader))
		pkt[6] = 0x40 // don't fragment
		pkt[8], pkt[9] = rstTTL, protoTCP
		s, d := src.As4(), dst.As4()
		copy(pkt[12:16], s[:])
		copy(pkt[16:20], d[:])
	}
	tcp := pkt[ipLen:]
	binary.BigEndian.PutUint16(tcp[0:], seg.Src.Port())
	binary.BigEndian.PutUint16(tcp[2:], seg.Dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], uint32(seg.Seq))
	binary.BigEndian.PutUint32(tcp[8:], uint32(seg.Ack))
	tcp[12] = tcpHeader / 4 << 4
	tcp[13] = byte(seg.Flags) // statetrack.Flags are the wire's bits
	Layout{v6: v6, tcp: ipLen, payload: ipLen + tcpHeader, end: ipLen + tcpHeader}.FixChecksums(pkt)
	return b
}

// AppendRSTFrame appends to b the frame of link type link that carries the
// RST rst in place of frame, the frame of the segment of that the RST
// replaces: frame's link-layer header (on Ethernet with the addresses
// swapped for an RST going back to of's sender), then AppendRST's packet.
func AppendRSTFrame(b, frame []byte, link LinkType, rst, of *statetrack.Segment) ([]byte, error) {
	off, _, err := IPOffset(frame, link)
	if err != nil {
		return b, fmt.Errorf("RST frame: %w", err)
	}
	start := len(b)
	b = append(b, frame[:off]...)
	if link == LinkEthernet && rst.Src != of.Src {
		h := b[start:]
		var mac [6]byte
		copy(mac[:], h[:6])
		copy(h[:6], h[6:12])
		copy(h[6:12], mac[:])
	}
	return AppendRST(b, rst), nil
}
