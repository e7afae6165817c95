package decode

import "encoding/binary"

// protoTCP is TCP's IP protocol number, part of the checksum's
// pseudo-header.
const protoTCP = 6

// FixChecksums recomputes, in place, the IPv4 header checksum (IPv4 only)
// and the TCP checksum of pkt, laid out as l. Packets handed over by the
// kernel with the GSO flag may carry a partial TCP checksum (the
// pseudo-header sum only), so any copy that is sent again needs this.
func (l Layout) FixChecksums(pkt []byte) {
	pkt = pkt[:l.end]
	if !l.v6 {
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:12], ^fold(sum(0, pkt[:l.tcp])))
	}
	tcp := pkt[l.tcp:]
	tcp[16], tcp[17] = 0, 0
	binary.BigEndian.PutUint16(tcp[16:18], ^fold(sum(l.pseudoHeader(pkt), tcp)))
}

// pseudoHeader returns the one's complement sum of the TCP checksum's
// pseudo-header: the addresses, the protocol and the TCP length.
func (l Layout) pseudoHeader(pkt []byte) uint32 {
	var s uint32
	if l.v6 {
		s = sum(0, pkt[8:40]) // source and destination
	} else {
		s = sum(0, pkt[12:20])
	}
	n := l.end - l.tcp
	return s + protoTCP + uint32(n&0xffff) + uint32(n>>16)
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
