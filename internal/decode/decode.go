// Package decode is the one place that reads and rewrites TCP packet
// headers. It turns raw IP packets (and captured link-layer frames) into
// statetrack.Segment values without allocating, and prepares a whole packet
// for sending again: it finds its headers (Layout), recomputes its
// checksums and cuts a GSO super-packet into segments that fit an MTU.
//
// A Parser wraps gopacket DecodingLayerParsers that reuse one set of layer
// structs (IPv4, IPv6, IPv6 extension headers, TCP). The segment length is
// taken from the IP header's length fields, not from the buffer, so a
// header-only copy (an NFQUEUE copy range of 128-256 bytes, a pcap with a
// small snaplen) or a GSO super-packet decodes to the segment as it was sent.
package decode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

// Sentinel errors. Decode, DecodeLayout and Split wrap them with the
// reason, so test them with errors.Is.
var (
	// ErrNotTCP: the packet is well formed but does not carry a TCP header
	// the tracker can use: another protocol, or an IP fragment.
	ErrNotTCP = errors.New("not a tcp segment")
	// ErrTruncated: the buffer ends before the end of the IP or TCP headers
	// (options included), or for DecodeLayout before the end of the
	// payload, though the IP length says the packet goes on.
	ErrTruncated = errors.New("truncated headers")
	// ErrMalformed: a header field is invalid or inconsistent with another.
	ErrMalformed = errors.New("malformed packet")
	// ErrUnsupported: the packet cannot be rewritten for sending again
	// (DecodeLayout, Layout.Split): Decode refuses it (the error then
	// wraps Decode's too), it has IPv6 extension headers, or the MTU
	// leaves no room for payload.
	ErrUnsupported = errors.New("unsupported packet")
)

const (
	ipv4MinHeader = 20
	ipv6Header    = 40
	tcpMinHeader  = 20
	// maxIPv4Len bounds what gopacket's IPv4 layer is shown when the total
	// length field is 0: it substitutes len(data) as a uint16.
	maxIPv4Len = 0xffff
)

// Parser decodes IPv4 and IPv6 TCP packets into statetrack.Segment values.
// It reuses its layer structs from packet to packet: keep one per worker.
// A Parser is not safe for concurrent use. The zero value is not usable:
// call NewParser.
type Parser struct {
	ip4  layers.IPv4
	ip6  layers.IPv6
	ext  layers.IPv6ExtensionSkipper
	frag ipv6Fragment
	tcp  layers.TCP

	// v4 and v6 share the layers above and differ only in their first
	// layer: gopacket's DecodingLayerParser has no way to dispatch on the
	// version nibble.
	v4, v6  *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
}

// NewParser returns a Parser ready for use.
func NewParser() *Parser {
	p := &Parser{decoded: make([]gopacket.LayerType, 0, 8)}
	// frag comes after ext so that it overrides the skipper for fragment
	// headers: later decoders replace earlier ones for the same type.
	decoders := []gopacket.DecodingLayer{&p.ip4, &p.ip6, &p.ext, &p.frag, &p.tcp}
	p.v4 = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, decoders...)
	p.v6 = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv6, decoders...)
	return p
}

// Decode decodes ip, a raw IPv4 or IPv6 packet (the version nibble
// decides), into seg. It is DecodeWire with wireLen = len(ip): use it when
// ip is the whole packet, or when the packet's IP length fields can be
// trusted to be non-zero.
func (p *Parser) Decode(ip []byte, seg *statetrack.Segment) error {
	return p.DecodeWire(ip, len(ip), seg)
}

// DecodeWire decodes ip, a raw IPv4 or IPv6 packet of which ip may be only
// a prefix, into seg. wireLen is the length of the whole packet (NFQUEUE's
// NFQA_CAP_LEN, a capture's original length); it is used only when an IPv4
// total length is 0, which TSO captures and Linux BIG TCP (GSO packets over
// 64 KiB) produce: the packet is then taken to be wireLen bytes long.
//
// The payload may be truncated; the headers may not. seg.Len is computed
// from the IP length fields. On error seg is left unchanged. DecodeWire does
// not allocate when it succeeds on a packet without an IPv6 hop-by-hop
// header (gopacket allocates one value per hop-by-hop option); errors
// allocate their message.
//
// Not decoded, by decision: IPv4 fragments, even a first fragment holding
// the whole TCP header, and IPv6 packets with a fragment header that is not
// an atomic fragment are ErrNotTCP, since the segment's length is unknown
// until reassembly; an IPv6 payload length of 0 (a jumbogram, or BIG TCP
// without a hop-by-hop header) is ErrMalformed.
func (p *Parser) DecodeWire(ip []byte, wireLen int, seg *statetrack.Segment) error {
	_, err := p.decode(ip, wireLen, seg)
	return err
}

// decode is DecodeWire, and it also returns where the packet's headers lie.
func (p *Parser) decode(ip []byte, wireLen int, seg *statetrack.Segment) (Layout, error) {
	if len(ip) == 0 {
		return Layout{}, fmt.Errorf("%w: empty packet", ErrTruncated)
	}
	if wireLen < len(ip) {
		return Layout{}, fmt.Errorf("%w: wire length %d is shorter than the %d bytes captured", ErrMalformed, wireLen, len(ip))
	}
	var (
		parser *gopacket.DecodingLayerParser
		first  gopacket.LayerType
		total  int // the packet's length according to its IP header
		data   = ip
	)
	switch v := ip[0] >> 4; v {
	case 4:
		if len(ip) < ipv4MinHeader {
			return Layout{}, fmt.Errorf("%w: ipv4 header needs %d bytes, have %d", ErrTruncated, ipv4MinHeader, len(ip))
		}
		parser, first = p.v4, layers.LayerTypeIPv4
		total = int(binary.BigEndian.Uint16(ip[2:4]))
		if total == 0 {
			total = wireLen
			data = ip[:min(len(ip), maxIPv4Len)]
		}
	case 6:
		if len(ip) < ipv6Header {
			return Layout{}, fmt.Errorf("%w: ipv6 header needs %d bytes, have %d", ErrTruncated, ipv6Header, len(ip))
		}
		parser, first = p.v6, layers.LayerTypeIPv6
		pl := int(binary.BigEndian.Uint16(ip[4:6]))
		if pl == 0 {
			return Layout{}, fmt.Errorf("%w: ipv6 payload length 0 (jumbogram) is not supported", ErrMalformed)
		}
		total = ipv6Header + pl
	default:
		return Layout{}, fmt.Errorf("%w: ip version %d", ErrMalformed, v)
	}

	err := parser.DecodeLayers(data, &p.decoded)
	// Past the TCP header gopacket goes on to the payload, for which it has
	// no decoder: an UnsupportedLayerType error that does not concern us.
	if n := len(p.decoded); n > 0 && p.decoded[n-1] == layers.LayerTypeTCP {
		return p.fill(ip, total, seg)
	}
	return Layout{}, p.failure(ip, total, first, err)
}

// fill sets seg from the decoded layers once the TCP header was reached.
func (p *Parser) fill(ip []byte, total int, seg *statetrack.Segment) (Layout, error) {
	// The TCP header's offset in ip: every layer's Contents is a reslice
	// of ip, so capacities count bytes to the end of the same array.
	off := cap(ip) - cap(p.tcp.Contents)
	hdr := int(p.tcp.DataOffset) * 4
	n := total - off - hdr
	if n < 0 {
		return Layout{}, fmt.Errorf("%w: ip length %d is shorter than the %d bytes of ip and tcp headers", ErrMalformed, total, off+hdr)
	}
	v6 := p.decoded[0] == layers.LayerTypeIPv6
	var src, dst netip.Addr
	if v6 {
		src, dst = netip.AddrFrom16([16]byte(p.ip6.SrcIP)), netip.AddrFrom16([16]byte(p.ip6.DstIP))
	} else {
		src, dst = netip.AddrFrom4([4]byte(p.ip4.SrcIP)), netip.AddrFrom4([4]byte(p.ip4.DstIP))
	}
	*seg = statetrack.Segment{
		Src:    netip.AddrPortFrom(src, uint16(p.tcp.SrcPort)),
		Dst:    netip.AddrPortFrom(dst, uint16(p.tcp.DstPort)),
		Seq:    seqnum.Value(p.tcp.Seq),
		Ack:    seqnum.Value(p.tcp.Ack),
		Flags:  statetrack.Flags(ip[off+13]),
		Len:    uint32(n),
		Window: p.tcp.Window,
	}
	return Layout{v6: v6, tcp: off, payload: off + hdr, end: total}, nil
}

// failure explains why decoding stopped before a TCP header: it finds the
// layer that failed (or was never reached) and the bytes it was given.
func (p *Parser) failure(ip []byte, total int, first gopacket.LayerType, err error) error {
	next, rest, proto := first, ip, layers.IPProtocol(0)
	if n := len(p.decoded); n > 0 {
		l := p.layer(p.decoded[n-1])
		next, rest, proto = l.NextLayerType(), l.LayerPayload(), p.nextHeader(p.decoded[n-1])
	}
	switch {
	case next == gopacket.LayerTypeFragment:
		return fmt.Errorf("%w: %s", ErrNotTCP, p.fragmentReason())
	case p.layer(next) == nil: // gopacket reports it as UnsupportedLayerType, or not at all
		return fmt.Errorf("%w: ip protocol %d (%s)", ErrNotTCP, uint8(proto), proto)
	}
	// A header was short or invalid. It is truncated when the buffer ended
	// early: short, and the IP length says more bytes exist.
	if need := headerLen(next, rest); len(rest) < need && len(ip) < total {
		return fmt.Errorf("%w: %s header needs %d bytes, have %d", ErrTruncated, next, need, len(rest))
	}
	if err == nil {
		err = errors.New("no bytes left for it")
	}
	return fmt.Errorf("%w: %s: %v", ErrMalformed, next, err)
}

// layer returns the Parser's decoder for t, or nil if it has none.
func (p *Parser) layer(t gopacket.LayerType) gopacket.DecodingLayer {
	switch t {
	case layers.LayerTypeIPv4:
		return &p.ip4
	case layers.LayerTypeIPv6:
		return &p.ip6
	case layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination:
		return &p.ext
	case layers.LayerTypeIPv6Fragment:
		return &p.frag
	case layers.LayerTypeTCP:
		return &p.tcp
	}
	return nil
}

// nextHeader returns the protocol number that follows the decoded layer t.
func (p *Parser) nextHeader(t gopacket.LayerType) layers.IPProtocol {
	switch t {
	case layers.LayerTypeIPv4:
		return p.ip4.Protocol
	case layers.LayerTypeIPv6:
		if p.ip6.HopByHop != nil {
			return p.ip6.HopByHop.NextHeader
		}
		return p.ip6.NextHeader
	case layers.LayerTypeIPv6Fragment:
		return p.frag.next
	}
	return p.ext.NextHeader
}

// fragmentReason describes the fragment that stopped decoding.
func (p *Parser) fragmentReason() string {
	if p.decoded[len(p.decoded)-1] == layers.LayerTypeIPv4 {
		return fmt.Sprintf("ipv4 fragment (offset %d, more fragments %t)", p.ip4.FragOffset*8, p.ip4.Flags&layers.IPv4MoreFragments != 0)
	}
	return fmt.Sprintf("ipv6 fragment (offset %d, more fragments %t)", p.frag.offset*8, p.frag.more)
}

// headerLen returns how many bytes the header of type t at the start of b
// occupies, as far as b tells (its fixed part when b is too short to say).
func headerLen(t gopacket.LayerType, b []byte) int {
	switch t {
	case layers.LayerTypeIPv4:
		if len(b) < 1 {
			return ipv4MinHeader
		}
		return max(ipv4MinHeader, int(b[0]&0x0f)*4)
	case layers.LayerTypeIPv6:
		if len(b) > 6 && layers.IPProtocol(b[6]) == layers.IPProtocolIPv6HopByHop {
			return ipv6Header + extLen(b[min(len(b), ipv6Header):])
		}
		return ipv6Header
	case layers.LayerTypeIPv6Fragment:
		return 8
	case layers.LayerTypeTCP:
		if len(b) < 13 {
			return tcpMinHeader
		}
		return max(tcpMinHeader, int(b[12]>>4)*4)
	}
	return extLen(b)
}

// extLen returns the length of the IPv6 extension header at the start of b.
func extLen(b []byte) int {
	if len(b) < 2 {
		return 8
	}
	return (int(b[1]) + 1) * 8
}

// ipv6Fragment decodes an IPv6 fragment header. gopacket v1.1.19 decodes
// it only through its allocating Packet API, and its skipper hides the
// offset. An atomic fragment (offset 0, no more fragments) leads on to its
// next header; any other fragment leads to gopacket.LayerTypeFragment.
type ipv6Fragment struct {
	layers.BaseLayer
	next   layers.IPProtocol
	offset uint16 // in 8-byte units
	more   bool
}

// CanDecode implements gopacket.DecodingLayer.
func (f *ipv6Fragment) CanDecode() gopacket.LayerClass { return layers.LayerTypeIPv6Fragment }

// NextLayerType implements gopacket.DecodingLayer.
func (f *ipv6Fragment) NextLayerType() gopacket.LayerType {
	if f.offset != 0 || f.more {
		return gopacket.LayerTypeFragment
	}
	return f.next.LayerType()
}

// DecodeFromBytes implements gopacket.DecodingLayer.
func (f *ipv6Fragment) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 8 {
		df.SetTruncated()
		return fmt.Errorf("ipv6 fragment header needs 8 bytes, have %d", len(data))
	}
	f.next = layers.IPProtocol(data[0])
	f.offset = binary.BigEndian.Uint16(data[2:4]) >> 3
	f.more = data[3]&1 != 0
	f.BaseLayer = layers.BaseLayer{Contents: data[:8], Payload: data[8:]}
	return nil
}
