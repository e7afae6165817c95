package nfq

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// tcpSpec describes a test packet; build serializes it with gopacket.
type tcpSpec struct {
	v6                          bool
	seq                         uint32
	id                          uint16
	fin, syn, psh, ack, cwr, df bool
	payload                     []byte
	options                     []layers.TCPOption
	// reply swaps the endpoints (server to client); ackNum, when not 0,
	// replaces the acknowledgment number 77.
	reply  bool
	ackNum uint32
}

// build returns the packet as gopacket serializes it with lengths and
// checksums computed: the reference every rewrite is compared with.
func (s tcpSpec) build(t testing.TB) []byte {
	t.Helper()
	tcp := &layers.TCP{
		SrcPort: 40312, DstPort: 8080, Seq: s.seq, Ack: 77, Window: 501,
		FIN: s.fin, SYN: s.syn, PSH: s.psh, ACK: s.ack, CWR: s.cwr,
		Options: s.options,
	}
	if s.ackNum != 0 {
		tcp.Ack = s.ackNum
	}
	src4, dst4 := net.IPv4(198, 18, 1, 2), net.IPv4(198, 18, 2, 2)
	src6, dst6 := net.ParseIP("fd00:1::2"), net.ParseIP("fd00:2::2")
	if s.reply {
		tcp.SrcPort, tcp.DstPort = tcp.DstPort, tcp.SrcPort
		src4, dst4, src6, dst6 = dst4, src4, dst6, src6
	}
	var ip gopacket.SerializableLayer
	if s.v6 {
		ip6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, HopLimit: 63,
			SrcIP: src6, DstIP: dst6}
		if err := tcp.SetNetworkLayerForChecksum(ip6); err != nil {
			t.Fatal(err)
		}
		ip = ip6
	} else {
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 63, Id: s.id, Protocol: layers.IPProtocolTCP,
			SrcIP: src4, DstIP: dst4}
		if s.df {
			ip4.Flags = layers.IPv4DontFragment
		}
		if err := tcp.SetNetworkLayerForChecksum(ip4); err != nil {
			t.Fatal(err)
		}
		ip = ip4
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, tcp, gopacket.Payload(s.payload)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func payloadOf(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return p
}

var tsOption = []layers.TCPOption{
	{OptionType: layers.TCPOptionKindNop},
	{OptionType: layers.TCPOptionKindNop},
	{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 1, 0, 0, 0, 2, 0}},
}

// tcpOffset returns where the TCP header starts in a reference packet.
func tcpOffset(pkt []byte) int {
	if pkt[0]>>4 == 6 {
		return ipv6Header
	}
	return int(pkt[0]&0x0f) * 4
}

func TestFixChecksumsMatchesGopacket(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec tcpSpec
	}{
		{"v4 syn", tcpSpec{syn: true, seq: 1000, id: 7, df: true, options: tsOption}},
		{"v4 odd payload", tcpSpec{ack: true, psh: true, seq: 0xfffffff0, payload: payloadOf(1001)}},
		{"v6 syn", tcpSpec{v6: true, syn: true, seq: 1, options: tsOption}},
		{"v6 odd payload", tcpSpec{v6: true, ack: true, payload: payloadOf(333)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.spec.build(t)
			th := tcpOffset(want)
			for _, damage := range []struct {
				name string
				fn   func(p []byte)
			}{
				{"zeroed", func(p []byte) {
					p[th+16], p[th+17] = 0, 0
					if !tc.spec.v6 {
						p[10], p[11] = 0, 0
					}
				}},
				{"garbage", func(p []byte) {
					p[th+16], p[th+17] = 0xde, 0xad
					if !tc.spec.v6 {
						p[10], p[11] = 0xbe, 0xef
					}
				}},
				{"partial (pseudo-header only, as with GSO)", func(p []byte) {
					var s uint32
					if tc.spec.v6 {
						s = sum(0, p[8:40])
					} else {
						s = sum(0, p[12:20])
					}
					n := len(p) - th
					s += protoTCP + uint32(n)
					binary.BigEndian.PutUint16(p[th+16:], fold(s))
				}},
			} {
				got := append([]byte(nil), want...)
				damage.fn(got)
				if bytes.Equal(got, want) {
					t.Fatalf("%s: damage did not change the packet", damage.name)
				}
				if err := FixChecksums(got); err != nil {
					t.Fatalf("%s: %v", damage.name, err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s: checksums differ from gopacket's:\n got % x\nwant % x", damage.name, got[:th+20], want[:th+20])
				}
			}
		})
	}
}

func TestSegmentPacketFitsIsCopy(t *testing.T) {
	want := tcpSpec{ack: true, payload: payloadOf(100)}.build(t)
	in := append([]byte(nil), want...)
	binary.BigEndian.PutUint16(in[tcpOffset(in)+16:], 0x1234)
	segs, err := SegmentPacket(in, 1500)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 || !bytes.Equal(segs[0], want) {
		t.Fatalf("got %d segments, first equal to reference: %v", len(segs), len(segs) > 0 && bytes.Equal(segs[0], want))
	}
	if binary.BigEndian.Uint16(in[tcpOffset(in)+16:]) != 0x1234 {
		t.Error("SegmentPacket modified its input")
	}
	segs[0][0] = 0
	if in[0] == 0 {
		t.Error("result aliases the input")
	}
}

func TestSegmentPacketSplitsGSO(t *testing.T) {
	const mtu = 1500
	for _, v6 := range []bool{false, true} {
		name := "v4"
		if v6 {
			name = "v6"
		}
		t.Run(name, func(t *testing.T) {
			orig := tcpSpec{v6: v6, ack: true, psh: true, fin: true, cwr: true, df: true, seq: 0xffffe000,
				id: 0xfffe, payload: payloadOf(10000), options: tsOption}
			super := orig.build(t)
			th := tcpOffset(super)
			hdr := th + 32                    // 20 + 12 bytes of options
			super[th+16], super[th+17] = 0, 0 // checksum not ready
			mss := mtu - hdr
			segs, err := SegmentPacket(super, mtu)
			if err != nil {
				t.Fatal(err)
			}
			wantN := (10000 + mss - 1) / mss
			if len(segs) != wantN {
				t.Fatalf("got %d segments, want %d", len(segs), wantN)
			}
			for i, seg := range segs {
				last := i == len(segs)-1
				want := orig
				want.seq = orig.seq + uint32(i*mss)
				want.id = orig.id + uint16(i)
				want.payload = orig.payload[i*mss : min((i+1)*mss, len(orig.payload))]
				want.fin, want.psh = last, last
				want.cwr = i == 0
				ref := want.build(t)
				if len(seg) > mtu {
					t.Errorf("segment %d: %d bytes > mtu %d", i, len(seg), mtu)
				}
				if !bytes.Equal(seg, ref) {
					t.Errorf("segment %d differs from reference:\n got % x\nwant % x", i, seg[:hdr], ref[:hdr])
				}
			}
		})
	}
}

func TestSegmentPacketErrors(t *testing.T) {
	good := tcpSpec{ack: true, payload: payloadOf(50)}.build(t)
	udp := append([]byte(nil), good...)
	udp[9] = 17
	frag := append([]byte(nil), good...)
	frag[6] |= 0x20 // more fragments
	v6ext := tcpSpec{v6: true, ack: true}.build(t)
	v6ext[6] = 0 // hop-by-hop options
	for _, tc := range []struct {
		name string
		pkt  []byte
		mtu  int
		want error
	}{
		{"empty", nil, 1500, ErrTruncatedPacket},
		{"cut in the payload", good[:len(good)-10], 1500, ErrTruncatedPacket},
		{"cut in the tcp header", good[:30], 1500, ErrTruncatedPacket},
		{"udp", udp, 1500, ErrUnsupportedPacket},
		{"fragment", frag, 1500, ErrUnsupportedPacket},
		{"ipv6 extension header", v6ext, 1500, ErrUnsupportedPacket},
		{"ip version 5", append([]byte{0x50}, good[1:]...), 1500, ErrUnsupportedPacket},
		{"mtu below headers", good, 40, ErrUnsupportedPacket},
	} {
		if _, err := SegmentPacket(tc.pkt, tc.mtu); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

// valid reports whether a packet's checksums verify.
func valid(pkt []byte) bool {
	l, err := parseLayout(pkt)
	if err != nil {
		return false
	}
	if !l.v6 && fold(sum(0, pkt[:l.ipLen])) != 0xffff {
		return false
	}
	var s uint32
	if l.v6 {
		s = sum(0, pkt[8:40])
	} else {
		s = sum(0, pkt[12:20])
	}
	tcp := pkt[l.tcpAt:l.total]
	s += protoTCP + uint32(len(tcp)&0xffff) + uint32(len(tcp)>>16)
	return fold(sum(s, tcp)) == 0xffff
}

func FuzzSegmentPacket(f *testing.F) {
	f.Add(tcpSpec{ack: true, payload: payloadOf(3000), options: tsOption}.build(f), uint16(1500))
	f.Add(tcpSpec{v6: true, fin: true, ack: true, payload: payloadOf(5000)}.build(f), uint16(1280))
	f.Add(tcpSpec{syn: true}.build(f), uint16(576))
	f.Fuzz(func(t *testing.T, pkt []byte, mtu uint16) {
		in := append([]byte(nil), pkt...)
		segs, err := SegmentPacket(in, int(mtu))
		if !bytes.Equal(in, pkt) {
			t.Fatal("input modified")
		}
		if err != nil {
			return
		}
		l, _ := parseLayout(pkt)
		hdr := l.ipLen + l.thLen
		var payload []byte
		for i, s := range segs {
			if len(segs) > 1 && len(s) > int(mtu) {
				t.Fatalf("segment %d: %d bytes > mtu %d", i, len(s), mtu)
			}
			if !valid(s) {
				t.Fatalf("segment %d: checksums do not verify", i)
			}
			payload = append(payload, s[hdr:]...)
		}
		if !bytes.Equal(payload, pkt[hdr:l.total]) {
			t.Fatal("payload not preserved")
		}
	})
}
