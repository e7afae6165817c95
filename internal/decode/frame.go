package decode

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/gopacket/layers"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// LinkType is a pcap LINKTYPE_ value: what a capture file says its frames
// begin with. gopacket v1.1.19's layers.LinkType is 8 bits wide and cannot
// hold LINKTYPE_LINUX_SLL2 (276), hence this type.
type LinkType uint16

// The link types IPOffset supports.
const (
	// LinkNull is the BSD loopback header: a 4-byte address family in the
	// capturing host's byte order.
	LinkNull LinkType = 0
	// LinkEthernet is Ethernet II, with at most one VLAN tag.
	LinkEthernet LinkType = 1
	// LinkDLTRaw12 is DLT_RAW as most platforms number it; files should
	// say LinkRaw but some old ones carry the DLT value.
	LinkDLTRaw12 LinkType = 12
	// LinkDLTRaw14 is DLT_RAW as OpenBSD numbers it.
	LinkDLTRaw14 LinkType = 14
	// LinkRaw is raw IPv4 or IPv6 (LINKTYPE_RAW).
	LinkRaw LinkType = 101
	// LinkLoop is OpenBSD loopback: LinkNull in network byte order.
	LinkLoop LinkType = 108
	// LinkLinuxSLL is Linux cooked capture v1.
	LinkLinuxSLL LinkType = 113
	// LinkIPv4 is raw IPv4 only.
	LinkIPv4 LinkType = 228
	// LinkIPv6 is raw IPv6 only.
	LinkIPv6 LinkType = 229
	// LinkLinuxSLL2 is Linux cooked capture v2 (tcpdump -i any on recent
	// libpcap).
	LinkLinuxSLL2 LinkType = 276
)

var linkNames = map[LinkType]string{
	LinkNull:      "null",
	LinkEthernet:  "ethernet",
	LinkDLTRaw12:  "raw",
	LinkDLTRaw14:  "raw",
	LinkRaw:       "raw",
	LinkLoop:      "loop",
	LinkLinuxSLL:  "linux-sll",
	LinkIPv4:      "ipv4",
	LinkIPv6:      "ipv6",
	LinkLinuxSLL2: "linux-sll2",
}

// String returns the link type's short name and number, e.g. "raw(101)".
func (l LinkType) String() string {
	if n, ok := linkNames[l]; ok {
		return fmt.Sprintf("%s(%d)", n, uint16(l))
	}
	return fmt.Sprintf("linktype(%d)", uint16(l))
}

// ErrUnsupportedLink is returned for a frame whose link type IPOffset does
// not know.
var ErrUnsupportedLink = errors.New("unsupported link type")

const (
	ethHeader   = 14
	vlanTag     = 4
	sllHeader   = 16
	sll2Header  = 20
	nullHeader  = 4
	etherTypeV4 = uint16(layers.EthernetTypeIPv4)
	etherTypeV6 = uint16(layers.EthernetTypeIPv6)
)

// Address family values of the BSD loopback (Null) header: AF_INET is 2
// everywhere, AF_INET6 differs by the capturing system.
const (
	afInet         = 2
	afInet6Linux   = 10
	afInet6BSD     = 24 // NetBSD, OpenBSD, BSD/OS
	afInet6FreeBSD = 28
	afInet6Darwin  = 30
	maxNullFamily  = 0xffff
)

// anyVersion is the IP version announced by raw IP link types: none.
const anyVersion byte = 0

// IPOffset finds the IP packet in frame, a captured frame of link type
// link. It returns the packet's offset and the IP version the link header
// announces (0 for raw IP link types, which announce none). Supported:
// Ethernet with at most one 802.1Q or 802.1ad tag, raw IP (101, 12, 14,
// 228, 229), Linux cooked captures (SLL 113, SLL2 276) and BSD loopback
// (Null 0, Loop 108). A link header for something other than IP is
// ErrNotTCP; a frame too short for its link header is ErrTruncated.
func IPOffset(frame []byte, link LinkType) (off int, version byte, err error) {
	switch link {
	case LinkRaw, LinkDLTRaw12, LinkDLTRaw14:
		return 0, anyVersion, nil
	case LinkIPv4:
		return 0, 4, nil
	case LinkIPv6:
		return 0, 6, nil
	case LinkEthernet:
		if len(frame) < ethHeader {
			return 0, 0, linkShort(link, ethHeader, len(frame))
		}
		off, et := ethHeader, binary.BigEndian.Uint16(frame[12:14])
		if isVLAN(et) {
			if len(frame) < ethHeader+vlanTag {
				return 0, 0, linkShort(link, ethHeader+vlanTag, len(frame))
			}
			off, et = ethHeader+vlanTag, binary.BigEndian.Uint16(frame[16:18])
			if isVLAN(et) {
				return 0, 0, fmt.Errorf("%w: stacked vlan tags", ErrNotTCP)
			}
		}
		return etherIP(off, et)
	case LinkLinuxSLL:
		if len(frame) < sllHeader {
			return 0, 0, linkShort(link, sllHeader, len(frame))
		}
		return etherIP(sllHeader, binary.BigEndian.Uint16(frame[14:16]))
	case LinkLinuxSLL2:
		if len(frame) < sll2Header {
			return 0, 0, linkShort(link, sll2Header, len(frame))
		}
		return etherIP(sll2Header, binary.BigEndian.Uint16(frame[0:2]))
	case LinkNull, LinkLoop:
		if len(frame) < nullHeader {
			return 0, 0, linkShort(link, nullHeader, len(frame))
		}
		// The family is in the capturing host's byte order (Null) or in
		// network order (Loop); its value is small either way.
		af := binary.LittleEndian.Uint32(frame)
		if af > maxNullFamily {
			af = binary.BigEndian.Uint32(frame)
		}
		switch af {
		case afInet:
			return nullHeader, 4, nil
		case afInet6Linux, afInet6BSD, afInet6FreeBSD, afInet6Darwin:
			return nullHeader, 6, nil
		}
		return 0, 0, fmt.Errorf("%w: loopback address family %d", ErrNotTCP, af)
	}
	return 0, 0, fmt.Errorf("%w: %s", ErrUnsupportedLink, link)
}

// isVLAN reports whether an EtherType introduces a VLAN tag.
func isVLAN(et uint16) bool {
	return et == uint16(layers.EthernetTypeDot1Q) || et == uint16(layers.EthernetTypeQinQ)
}

// etherIP maps an EtherType found at the end of a link header to an IP
// version.
func etherIP(off int, et uint16) (int, byte, error) {
	switch et {
	case etherTypeV4:
		return off, 4, nil
	case etherTypeV6:
		return off, 6, nil
	}
	return 0, 0, fmt.Errorf("%w: ethertype %#04x", ErrNotTCP, et)
}

func linkShort(link LinkType, need, have int) error {
	return fmt.Errorf("%w: %s link header needs %d bytes, have %d", ErrTruncated, link, need, have)
}

// DecodeFrame decodes a captured frame of link type link into seg. origLen
// is the frame's length on the wire (a capture's original length, at least
// len(frame)). It returns the IP packet's offset in frame. DecodeFrame does
// not allocate when DecodeWire would not.
func (p *Parser) DecodeFrame(frame []byte, origLen int, link LinkType, seg *statetrack.Segment) (ipOffset int, err error) {
	off, version, err := IPOffset(frame, link)
	if err != nil {
		return 0, err
	}
	ip := frame[off:]
	if version != anyVersion && len(ip) > 0 && ip[0]>>4 != version {
		return off, fmt.Errorf("%w: link header announces ip version %d, packet has %d", ErrMalformed, version, ip[0]>>4)
	}
	return off, p.DecodeWire(ip, origLen-off, seg)
}
