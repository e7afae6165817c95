package decode

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

var (
	cli4 = netip.MustParseAddr("198.18.0.1")
	srv4 = netip.MustParseAddr("198.19.0.2")
	cli6 = netip.MustParseAddr("fd00:1::1")
	srv6 = netip.MustParseAddr("fd00:2::2")
)

// synOptions are the options of a Linux SYN: more than the four that
// gopacket's TCP layer keeps without allocating.
var synOptions = []layers.TCPOption{
	{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
	{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
	{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
	{OptionType: layers.TCPOptionKindNop},
	{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
}

// tcpSeg returns a TCP layer from 40312 to 8080 with the given flags.
func tcpSeg(flags statetrack.Flags, seq, ack uint32, opts []layers.TCPOption) *layers.TCP {
	return &layers.TCP{
		SrcPort: 40312, DstPort: 8080, Seq: seq, Ack: ack, Window: 64240,
		FIN: flags.Has(statetrack.FIN), SYN: flags.Has(statetrack.SYN), RST: flags.Has(statetrack.RST),
		PSH: flags.Has(statetrack.PSH), ACK: flags.Has(statetrack.ACK), URG: flags.Has(statetrack.URG),
		ECE: flags.Has(statetrack.ECE), CWR: flags.Has(statetrack.CWR),
		Options: opts,
	}
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

// ipLayer is an IPv4 or IPv6 header to serialize.
type ipLayer interface {
	gopacket.NetworkLayer
	gopacket.SerializableLayer
}

// ip4 returns the IPv4 header of the test packets, cli4 to srv4.
func ip4(opts ...layers.IPv4Option) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP(cli4.AsSlice()), DstIP: net.IP(srv4.AsSlice()), Options: opts}
}

// ip6 returns the IPv6 header of the test packets, cli6 to srv6, whose
// next header is next.
func ip6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: net.IP(cli6.AsSlice()), DstIP: net.IP(srv6.AsSlice())}
}

// packet serializes ip, the raw extension headers ext, tcp and payload,
// with lengths and checksums computed.
func packet(t testing.TB, ip ipLayer, ext []byte, tcp *layers.TCP, payload []byte) []byte {
	t.Helper()
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, ip, gopacket.Payload(ext), tcp, gopacket.Payload(payload))
}

// v4 builds an IPv4 packet carrying tcp and n bytes of payload.
func v4(t testing.TB, tcp *layers.TCP, n int, ipOpts ...layers.IPv4Option) []byte {
	t.Helper()
	return packet(t, ip4(ipOpts...), nil, tcp, make([]byte, n))
}

// v6 builds an IPv6 packet carrying the raw extension headers ext (whose
// first next-header is next), then tcp and n bytes of payload.
func v6(t testing.TB, next layers.IPProtocol, ext []byte, tcp *layers.TCP, n int) []byte {
	t.Helper()
	return packet(t, ip6(next), ext, tcp, make([]byte, n))
}

// ext6 returns an 8-byte IPv6 extension header (hop-by-hop, routing or
// destination options: a PadN fill) followed by next.
func ext6(next layers.IPProtocol) []byte { return []byte{byte(next), 0, 1, 4, 0, 0, 0, 0} }

// frag6 returns an IPv6 fragment header followed by next.
func frag6(next layers.IPProtocol, offset uint16, more bool) []byte {
	b := []byte{byte(next), 0, 0, 0, 0, 0, 0x12, 0x34}
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:4], v)
	return b
}

func udp4(t testing.TB) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP(cli4.AsSlice()), DstIP: net.IP(srv4.AsSlice())}
	u := &layers.UDP{SrcPort: 5353, DstPort: 53}
	if err := u.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, ip, u, gopacket.Payload([]byte("query")))
}

// patch returns a copy of b with b[i] set to v.
func patch(b []byte, i int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[i] = v
	return c
}

// put16 returns a copy of b with a big-endian uint16 at i.
func put16(b []byte, i int, v uint16) []byte {
	c := append([]byte(nil), b...)
	binary.BigEndian.PutUint16(c[i:], v)
	return c
}

func seg4(flags statetrack.Flags, seq, ack uint32, n uint32) statetrack.Segment {
	return statetrack.Segment{
		Src: netip.AddrPortFrom(cli4, 40312), Dst: netip.AddrPortFrom(srv4, 8080),
		Seq: seqnum.Value(seq), Ack: seqnum.Value(ack), Flags: flags, Len: n, Window: 64240,
	}
}

func seg6(flags statetrack.Flags, seq, ack uint32, n uint32) statetrack.Segment {
	s := seg4(flags, seq, ack, n)
	s.Src, s.Dst = netip.AddrPortFrom(cli6, 40312), netip.AddrPortFrom(srv6, 8080)
	return s
}

func TestDecode(t *testing.T) {
	ack := statetrack.ACK
	syn4 := v4(t, tcpSeg(statetrack.SYN, 1000, 0, synOptions), 0)
	data4 := v4(t, tcpSeg(ack|statetrack.PSH, 5000, 7000, nil), 1000)
	gso4 := v4(t, tcpSeg(ack, 5000, 7000, nil), 60000)
	dst6 := v6(t, layers.IPProtocolIPv6Destination, ext6(layers.IPProtocolTCP), tcpSeg(ack, 9, 10, nil), 1200)
	tests := []struct {
		name    string
		ip      []byte
		wireLen int // 0: len(ip)
		want    statetrack.Segment
	}{
		{"ipv4 syn with options", syn4, 0, seg4(statetrack.SYN, 1000, 0, 0)},
		{"ipv4 syn-ack", v4(t, tcpSeg(statetrack.SYN|ack, 77, 1001, synOptions[:1]), 0), 0, seg4(statetrack.SYN|ack, 77, 1001, 0)},
		{"ipv4 fin-ack", v4(t, tcpSeg(statetrack.FIN|ack, 1, 2, nil), 0), 0, seg4(statetrack.FIN|ack, 1, 2, 0)},
		{"ipv4 rst", v4(t, tcpSeg(statetrack.RST, 0xffffffff, 0, nil), 0), 0, seg4(statetrack.RST, 0xffffffff, 0, 0)},
		{"ipv4 every flag", v4(t, tcpSeg(0xff, 1, 2, nil), 3), 0, seg4(0xff, 1, 2, 3)},
		{"ipv4 data", data4, 0, seg4(ack|statetrack.PSH, 5000, 7000, 1000)},
		{"ipv4 data, header-only copy", data4[:40], 0, seg4(ack|statetrack.PSH, 5000, 7000, 1000)},
		{"ipv4 gso super-packet, header-only copy", gso4[:128], 0, seg4(ack, 5000, 7000, 60000)},
		{"ipv4 with ip options", v4(t, tcpSeg(ack, 1, 2, synOptions), 10,
			layers.IPv4Option{OptionType: 1}, layers.IPv4Option{OptionType: 1}, layers.IPv4Option{OptionType: 1}, layers.IPv4Option{OptionType: 0}),
			0, seg4(ack, 1, 2, 10)},
		{"ipv4 ethernet padding ignored", append(v4(t, tcpSeg(ack, 1, 2, nil), 0), make([]byte, 6)...), 0, seg4(ack, 1, 2, 0)},
		{"ipv4 total length 0 (BIG TCP), whole packet", put16(v4(t, tcpSeg(ack, 1, 2, nil), 70000-40), 2, 0), 0, seg4(ack, 1, 2, 70000-40)},
		{"ipv4 total length 0, header copy with wire length", put16(v4(t, tcpSeg(ack, 1, 2, nil), 0), 2, 0), 100000, seg4(ack, 1, 2, 100000-40)},
		{"ipv6 syn", v6(t, layers.IPProtocolTCP, nil, tcpSeg(statetrack.SYN, 5, 0, synOptions), 0), 0, seg6(statetrack.SYN, 5, 0, 0)},
		{"ipv6 data, header-only copy", v6(t, layers.IPProtocolTCP, nil, tcpSeg(ack, 5, 6, nil), 1400)[:60], 0, seg6(ack, 5, 6, 1400)},
		{"ipv6 destination options", dst6, 0, seg6(ack, 9, 10, 1200)},
		{"ipv6 destination options, header-only copy", dst6[:68], 0, seg6(ack, 9, 10, 1200)},
		{"ipv6 hop-by-hop", v6(t, layers.IPProtocolIPv6HopByHop, ext6(layers.IPProtocolTCP), tcpSeg(ack, 9, 10, nil), 7), 0, seg6(ack, 9, 10, 7)},
		{"ipv6 routing then destination", v6(t, layers.IPProtocolIPv6Routing,
			append(ext6(layers.IPProtocolIPv6Destination), ext6(layers.IPProtocolTCP)...), tcpSeg(statetrack.FIN|ack, 9, 10, nil), 0),
			0, seg6(statetrack.FIN|ack, 9, 10, 0)},
		{"ipv6 atomic fragment", v6(t, layers.IPProtocolIPv6Fragment, frag6(layers.IPProtocolTCP, 0, false), tcpSeg(ack, 9, 10, nil), 100), 0, seg6(ack, 9, 10, 100)},
	}
	p := NewParser()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := tt.wireLen
			if wire == 0 {
				wire = len(tt.ip)
			}
			var got statetrack.Segment
			if err := p.DecodeWire(tt.ip, wire, &got); err != nil {
				t.Fatalf("DecodeWire: %v", err)
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	ack := statetrack.ACK
	syn4 := v4(t, tcpSeg(statetrack.SYN, 1000, 0, synOptions), 0) // 20 + 40 bytes
	data4 := v4(t, tcpSeg(ack, 1, 2, nil), 100)
	data6 := v6(t, layers.IPProtocolTCP, nil, tcpSeg(ack, 1, 2, nil), 100)
	dst6 := v6(t, layers.IPProtocolIPv6Destination, ext6(layers.IPProtocolTCP), tcpSeg(ack, 9, 10, nil), 100)
	icmp6 := v6(t, layers.IPProtocolICMPv6, nil, tcpSeg(ack, 1, 2, nil), 0) // the bytes do not matter
	tests := []struct {
		name string
		ip   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"ipv4 header cut", syn4[:19], ErrTruncated},
		{"ipv4 options cut", v4(t, tcpSeg(ack, 1, 2, nil), 0, layers.IPv4Option{OptionType: 1}, layers.IPv4Option{OptionType: 0})[:22], ErrTruncated},
		{"tcp header cut", syn4[:39], ErrTruncated},
		{"tcp options cut", syn4[:59], ErrTruncated},
		{"ip header only", syn4[:20], ErrTruncated},
		{"ipv6 header cut", data6[:39], ErrTruncated},
		{"ipv6 tcp header cut", data6[:50], ErrTruncated},
		{"ipv6 extension header cut", dst6[:44], ErrTruncated},
		{"ipv6 hop-by-hop cut", v6(t, layers.IPProtocolIPv6HopByHop, ext6(layers.IPProtocolTCP), tcpSeg(ack, 9, 10, nil), 0)[:44], ErrTruncated},
		{"udp", udp4(t), ErrNotTCP},
		{"ipv4 unknown protocol", patch(data4, 9, 253), ErrNotTCP},
		{"ipv6 icmp", icmp6, ErrNotTCP},
		{"ipv6 extension then udp", patch(dst6, 40, byte(layers.IPProtocolUDP)), ErrNotTCP},
		{"ipv4 first fragment", put16(data4, 6, 0x2000), ErrNotTCP},
		{"ipv4 later fragment", put16(data4, 6, 0x0010), ErrNotTCP},
		{"ipv6 first fragment", v6(t, layers.IPProtocolIPv6Fragment, frag6(layers.IPProtocolTCP, 0, true), tcpSeg(ack, 9, 10, nil), 100), ErrNotTCP},
		{"ipv6 later fragment", v6(t, layers.IPProtocolIPv6Fragment, frag6(layers.IPProtocolTCP, 185, false), tcpSeg(ack, 9, 10, nil), 100), ErrNotTCP},
		{"ip version 5", patch(data4, 0, 0x55), ErrMalformed},
		{"ipv4 ihl 4", patch(data4, 0, 0x44), ErrMalformed},
		{"ipv4 total length below header", put16(data4, 2, 19), ErrMalformed},
		{"ipv4 total length cuts tcp header", put16(data4, 2, 30), ErrMalformed},
		{"tcp data offset 4", patch(data4, 32, 0x40), ErrMalformed},
		{"tcp option length 0", patch(syn4, 41, 0), ErrMalformed},
		{"ipv6 payload length 0", put16(data6, 4, 0), ErrMalformed},
		{"ipv6 payload length cuts tcp header", put16(data6, 4, 10), ErrMalformed},
	}
	p := NewParser()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seg := seg4(ack, 42, 43, 44)
			before := seg
			err := p.Decode(tt.ip, &seg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
			if seg != before {
				t.Errorf("segment changed on error: %+v", seg)
			}
			t.Log(err)
		})
	}
}

func TestDecodeWireShorterThanCapture(t *testing.T) {
	ip := v4(t, tcpSeg(statetrack.ACK, 1, 2, nil), 10)
	var seg statetrack.Segment
	if err := NewParser().DecodeWire(ip, len(ip)-1, &seg); !errors.Is(err, ErrMalformed) {
		t.Fatalf("DecodeWire = %v, want ErrMalformed", err)
	}
}

// TestDecodeReusesParser checks that state from one packet does not leak
// into the next: an IPv6 packet after an IPv4 one and back.
func TestDecodeReusesParser(t *testing.T) {
	p := NewParser()
	pkts := [][]byte{
		v4(t, tcpSeg(statetrack.SYN, 1, 0, synOptions), 0),
		v6(t, layers.IPProtocolIPv6HopByHop, ext6(layers.IPProtocolTCP), tcpSeg(statetrack.ACK, 2, 3, nil), 4),
		udp4(t),
		v4(t, tcpSeg(statetrack.ACK, 5, 6, nil), 7),
	}
	want := []statetrack.Segment{seg4(statetrack.SYN, 1, 0, 0), seg6(statetrack.ACK, 2, 3, 4), {}, seg4(statetrack.ACK, 5, 6, 7)}
	for i, b := range pkts {
		var got statetrack.Segment
		err := p.Decode(b, &got)
		if want[i] == (statetrack.Segment{}) {
			if !errors.Is(err, ErrNotTCP) {
				t.Errorf("packet %d: Decode = %v, want ErrNotTCP", i, err)
			}
			continue
		}
		if err != nil || got != want[i] {
			t.Errorf("packet %d: got %+v, %v; want %+v", i, got, err, want[i])
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	tests := []struct {
		name string
		ip   []byte
	}{
		{"ipv4 syn with five options", v4(t, tcpSeg(statetrack.SYN, 1, 0, synOptions), 0)},
		{"ipv4 header-only copy of a gso packet", v4(t, tcpSeg(statetrack.ACK, 1, 2, nil), 60000)[:128]},
		{"ipv4 with ip options", v4(t, tcpSeg(statetrack.ACK, 1, 2, nil), 0, layers.IPv4Option{OptionType: 1}, layers.IPv4Option{OptionType: 0})},
		{"ipv6 syn", v6(t, layers.IPProtocolTCP, nil, tcpSeg(statetrack.SYN, 1, 0, synOptions), 0)},
		{"ipv6 routing, fragment, destination", v6(t, layers.IPProtocolIPv6Routing,
			append(append(ext6(layers.IPProtocolIPv6Fragment), frag6(layers.IPProtocolIPv6Destination, 0, false)...), ext6(layers.IPProtocolTCP)...),
			tcpSeg(statetrack.ACK, 1, 2, nil), 1000)},
	}
	p := NewParser()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seg statetrack.Segment
			if err := p.Decode(tt.ip, &seg); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(100, func() { _ = p.Decode(tt.ip, &seg) }); n > 0 {
				t.Errorf("Decode allocates %.1f times per packet, want 0", n)
			}
			frame := append([]byte{0x00, 0x00, 0x5e, 0x00, 0x53, 0x01, 0x00, 0x00, 0x5e, 0x00, 0x53, 0x02, 0x81, 0x00, 0x00, 0x07, 0, 0}, tt.ip...)
			binary.BigEndian.PutUint16(frame[16:], etherType(tt.ip))
			if n := testing.AllocsPerRun(100, func() { _, _ = p.DecodeFrame(frame, len(frame), LinkEthernet, &seg) }); n > 0 {
				t.Errorf("DecodeFrame allocates %.1f times per frame, want 0", n)
			}
		})
	}
}

func etherType(ip []byte) uint16 {
	if ip[0]>>4 == 6 {
		return uint16(layers.EthernetTypeIPv6)
	}
	return uint16(layers.EthernetTypeIPv4)
}

func BenchmarkDecode(b *testing.B) {
	for _, bb := range []struct {
		name string
		ip   []byte
	}{
		{"ipv4-syn", v4(b, tcpSeg(statetrack.SYN, 1, 0, synOptions), 0)},
		{"ipv4-gso-header-copy", v4(b, tcpSeg(statetrack.ACK, 1, 2, nil), 60000)[:128]},
		{"ipv6-ack", v6(b, layers.IPProtocolTCP, nil, tcpSeg(statetrack.ACK, 1, 2, nil), 1000)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			p := NewParser()
			var seg statetrack.Segment
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Decode(bb.ip, &seg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
