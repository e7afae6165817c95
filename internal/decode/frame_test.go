package decode

import (
	"errors"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

var macs = []byte{0x00, 0x00, 0x5e, 0x00, 0x53, 0x01, 0x00, 0x00, 0x5e, 0x00, 0x53, 0x02}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestDecodeFrame(t *testing.T) {
	ip4 := v4(t, tcpSeg(statetrack.SYN, 1000, 0, synOptions), 0)
	ip6 := v6(t, layers.IPProtocolTCP, nil, tcpSeg(statetrack.ACK, 5, 6, nil), 100)
	want4, want6 := seg4(statetrack.SYN, 1000, 0, 0), seg6(statetrack.ACK, 5, 6, 100)
	sll := func(proto byte) []byte { return []byte{0, 0, 0, 1, 0, 6, 0, 0, 0x5e, 0, 0x53, 1, 0, 0, 0x08, proto} }
	sll2 := func(et0, et1 byte) []byte {
		return []byte{et0, et1, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 0, 0, 0x5e, 0, 0x53, 1, 0, 0}
	}
	tests := []struct {
		name string
		link LinkType
		hdr  []byte
		ip   []byte
		want statetrack.Segment
	}{
		{"raw ipv4", LinkRaw, nil, ip4, want4},
		{"raw ipv6", LinkRaw, nil, ip6, want6},
		{"dlt raw 12", LinkDLTRaw12, nil, ip4, want4},
		{"dlt raw 14", LinkDLTRaw14, nil, ip6, want6},
		{"ipv4", LinkIPv4, nil, ip4, want4},
		{"ipv6", LinkIPv6, nil, ip6, want6},
		{"ethernet ipv4", LinkEthernet, cat(macs, []byte{0x08, 0x00}), ip4, want4},
		{"ethernet ipv6", LinkEthernet, cat(macs, []byte{0x86, 0xdd}), ip6, want6},
		{"ethernet 802.1q ipv4", LinkEthernet, cat(macs, []byte{0x81, 0x00, 0x00, 0x07, 0x08, 0x00}), ip4, want4},
		{"ethernet 802.1ad ipv6", LinkEthernet, cat(macs, []byte{0x88, 0xa8, 0x00, 0x07, 0x86, 0xdd}), ip6, want6},
		{"linux sll ipv4", LinkLinuxSLL, sll(0x00), ip4, want4},
		{"linux sll ipv6", LinkLinuxSLL, append(sll(0)[:14], 0x86, 0xdd), ip6, want6},
		{"linux sll2 ipv4", LinkLinuxSLL2, sll2(0x08, 0x00), ip4, want4},
		{"linux sll2 ipv6", LinkLinuxSLL2, sll2(0x86, 0xdd), ip6, want6},
		{"null little-endian ipv4", LinkNull, []byte{2, 0, 0, 0}, ip4, want4},
		{"null big-endian ipv6 (darwin)", LinkNull, []byte{0, 0, 0, 30}, ip6, want6},
		{"null ipv6 (freebsd)", LinkNull, []byte{28, 0, 0, 0}, ip6, want6},
		{"null ipv6 (openbsd)", LinkNull, []byte{24, 0, 0, 0}, ip6, want6},
		{"null ipv6 (linux)", LinkNull, []byte{10, 0, 0, 0}, ip6, want6},
		{"loop ipv4", LinkLoop, []byte{0, 0, 0, 2}, ip4, want4},
	}
	p := NewParser()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := cat(tt.hdr, tt.ip)
			var got statetrack.Segment
			off, err := p.DecodeFrame(frame, len(frame), tt.link, &got)
			if err != nil {
				t.Fatalf("DecodeFrame: %v", err)
			}
			if off != len(tt.hdr) {
				t.Errorf("ip offset %d, want %d", off, len(tt.hdr))
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeFrameOrigLen(t *testing.T) {
	// A snaplen-truncated Ethernet capture of a BIG TCP packet: the IPv4
	// total length is 0, the original frame length tells the size.
	ip := put16(v4(t, tcpSeg(statetrack.ACK, 1, 2, nil), 0), 2, 0)
	frame := cat(macs, []byte{0x08, 0x00}, ip)
	var got statetrack.Segment
	if _, err := NewParser().DecodeFrame(frame, 14+90000, LinkEthernet, &got); err != nil {
		t.Fatal(err)
	}
	if got.Len != 90000-40 {
		t.Errorf("Len = %d, want %d", got.Len, 90000-40)
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	ip4 := v4(t, tcpSeg(statetrack.ACK, 1, 2, nil), 0)
	tests := []struct {
		name  string
		link  LinkType
		frame []byte
		want  error
	}{
		{"ethernet header cut", LinkEthernet, macs, ErrTruncated},
		{"vlan tag cut", LinkEthernet, cat(macs, []byte{0x81, 0x00, 0x00}), ErrTruncated},
		{"sll header cut", LinkLinuxSLL, make([]byte, 15), ErrTruncated},
		{"sll2 header cut", LinkLinuxSLL2, make([]byte, 19), ErrTruncated},
		{"null header cut", LinkNull, []byte{2, 0, 0}, ErrTruncated},
		{"ethernet arp", LinkEthernet, cat(macs, []byte{0x08, 0x06}, make([]byte, 28)), ErrNotTCP},
		{"stacked vlan tags", LinkEthernet, cat(macs, []byte{0x88, 0xa8, 0, 7, 0x81, 0x00, 0, 8, 0x08, 0x00}, ip4), ErrNotTCP},
		{"null unknown family", LinkNull, cat([]byte{7, 0, 0, 0}, ip4), ErrNotTCP},
		{"ethertype ipv6, ipv4 inside", LinkEthernet, cat(macs, []byte{0x86, 0xdd}, ip4), ErrMalformed},
		{"link ipv6, ipv4 inside", LinkIPv6, ip4, ErrMalformed},
		{"ethernet without ip bytes", LinkEthernet, cat(macs, []byte{0x08, 0x00}), ErrTruncated},
		{"unsupported link type", LinkType(105), ip4, ErrUnsupportedLink},
	}
	p := NewParser()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seg statetrack.Segment
			if _, err := p.DecodeFrame(tt.frame, len(tt.frame), tt.link, &seg); !errors.Is(err, tt.want) {
				t.Fatalf("DecodeFrame = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLinkTypeString(t *testing.T) {
	for l, want := range map[LinkType]string{LinkRaw: "raw(101)", LinkLinuxSLL2: "linux-sll2(276)", 105: "linktype(105)"} {
		if got := l.String(); got != want {
			t.Errorf("LinkType(%d).String() = %q, want %q", uint16(l), got, want)
		}
	}
}
