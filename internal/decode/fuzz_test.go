package decode

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// seedPackets returns real packets of every shape the decoder handles.
func seedPackets(t testing.TB) [][]byte {
	ack := statetrack.ACK
	gso := v4(t, tcpSeg(ack, 1, 2, nil), 60000)
	dst6 := v6(t, layers.IPProtocolIPv6Destination, ext6(layers.IPProtocolTCP), tcpSeg(ack, 9, 10, nil), 1200)
	return [][]byte{
		v4(t, tcpSeg(statetrack.SYN, 1000, 0, synOptions), 0),
		v4(t, tcpSeg(statetrack.SYN|ack, 1000, 1, synOptions[:2]), 0),
		v4(t, tcpSeg(statetrack.FIN|ack, 5, 6, nil), 0),
		v4(t, tcpSeg(statetrack.RST, 5, 0, nil), 0),
		v4(t, tcpSeg(ack, 1, 2, nil), 10, layers.IPv4Option{OptionType: 1}, layers.IPv4Option{OptionType: 0}),
		gso[:128],
		put16(gso[:200], 2, 0),
		put16(v4(t, tcpSeg(ack, 1, 2, nil), 0), 6, 0x2000),
		udp4(t),
		v6(t, layers.IPProtocolTCP, nil, tcpSeg(statetrack.SYN, 5, 0, synOptions), 0),
		dst6,
		dst6[:44],
		v6(t, layers.IPProtocolIPv6HopByHop, ext6(layers.IPProtocolTCP), tcpSeg(ack, 9, 10, nil), 7),
		v6(t, layers.IPProtocolIPv6Fragment, frag6(layers.IPProtocolTCP, 0, false), tcpSeg(ack, 9, 10, nil), 100),
		v6(t, layers.IPProtocolIPv6Fragment, frag6(layers.IPProtocolTCP, 8, true), tcpSeg(ack, 9, 10, nil), 100),
	}
}

func FuzzDecode(f *testing.F) {
	for _, b := range seedPackets(f) {
		f.Add(b, uint32(0))
		f.Add(b[:len(b)/2], uint32(len(b)-len(b)/2))
	}
	p := NewParser()
	f.Fuzz(func(t *testing.T, ip []byte, extra uint32) {
		wire := len(ip) + int(extra)
		var seg statetrack.Segment
		if err := p.DecodeWire(ip, wire, &seg); err != nil {
			return
		}
		checkSegment(t, ip, wire, seg)
	})
}

// checkSegment checks a decoded segment against the packet's bytes, found
// independently of the decoder.
func checkSegment(t *testing.T, ip []byte, wire int, seg statetrack.Segment) {
	t.Helper()
	var hdrs, total int // bytes of IP headers, packet length by the IP header
	switch ip[0] >> 4 {
	case 4:
		if !seg.Src.Addr().Is4() || seg.Src.Addr().As4() != [4]byte(ip[12:16]) || seg.Dst.Addr().As4() != [4]byte(ip[16:20]) {
			t.Fatalf("addresses %v -> %v do not match the ipv4 header", seg.Src, seg.Dst)
		}
		hdrs, total = int(ip[0]&0x0f)*4, int(binary.BigEndian.Uint16(ip[2:4]))
		if total == 0 {
			total = wire
		}
	case 6:
		if !seg.Src.Addr().Is6() || seg.Src.Addr().As16() != [16]byte(ip[8:24]) || seg.Dst.Addr().As16() != [16]byte(ip[24:40]) {
			t.Fatalf("addresses %v -> %v do not match the ipv6 header", seg.Src, seg.Dst)
		}
		total = 40 + int(binary.BigEndian.Uint16(ip[4:6]))
		// Extension headers come in multiples of 8 bytes: find the TCP
		// header whose lengths add up.
		for off := 40; off+20 <= len(ip); off += 8 {
			doff := int(ip[off+12]>>4) * 4
			if off+doff+int(seg.Len) == total && binary.BigEndian.Uint16(ip[off:]) == seg.Src.Port() {
				hdrs = off
				break
			}
		}
		if hdrs == 0 {
			t.Fatalf("no tcp header in the ipv6 packet adds up to Len %d", seg.Len)
		}
	default:
		t.Fatalf("decoded ip version %d", ip[0]>>4)
	}
	tcp := ip[hdrs:]
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || hdrs+doff > len(ip) {
		t.Fatalf("decoded a tcp header of %d bytes at %d in %d bytes", doff, hdrs, len(ip))
	}
	if seg.Src.Port() != binary.BigEndian.Uint16(tcp[0:2]) || seg.Dst.Port() != binary.BigEndian.Uint16(tcp[2:4]) {
		t.Fatalf("ports %d -> %d do not match the tcp header", seg.Src.Port(), seg.Dst.Port())
	}
	if uint32(seg.Seq) != binary.BigEndian.Uint32(tcp[4:8]) || uint32(seg.Ack) != binary.BigEndian.Uint32(tcp[8:12]) ||
		seg.Flags != statetrack.Flags(tcp[13]) || seg.Window != binary.BigEndian.Uint16(tcp[14:16]) {
		t.Fatalf("seq/ack/flags/window of %+v do not match the tcp header", seg)
	}
	if int(seg.Len) != total-hdrs-doff {
		t.Fatalf("Len %d, want ip length %d - headers %d - %d", seg.Len, total, hdrs, doff)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	hdrs := map[LinkType][]byte{
		LinkRaw:       nil,
		LinkEthernet:  cat(macs, []byte{0x81, 0x00, 0, 7, 0x08, 0x00}),
		LinkLinuxSLL:  {0, 0, 0, 1, 0, 6, 0, 0, 0x5e, 0, 0x53, 1, 0, 0, 0x86, 0xdd},
		LinkLinuxSLL2: {0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 0, 0, 0x5e, 0, 0x53, 1, 0, 0},
		LinkNull:      {2, 0, 0, 0},
	}
	for _, b := range seedPackets(f) {
		for link, h := range hdrs {
			f.Add(uint16(link), cat(h, b))
		}
	}
	p := NewParser()
	f.Fuzz(func(t *testing.T, link uint16, frame []byte) {
		var seg statetrack.Segment
		off, err := p.DecodeFrame(frame, len(frame), LinkType(link), &seg)
		if err != nil {
			return
		}
		want, _, _ := IPOffset(frame, LinkType(link))
		if off != want || off > len(frame) {
			t.Fatalf("DecodeFrame offset %d, IPOffset %d, frame %d bytes", off, want, len(frame))
		}
		// With the frame's own length as the original length, DecodeFrame
		// is Decode of the IP packet.
		var again statetrack.Segment
		if err := p.Decode(frame[off:], &again); err != nil {
			t.Fatalf("Decode of the same packet failed: %v", err)
		}
		if again != seg {
			t.Fatalf("DecodeFrame %+v, Decode %+v", seg, again)
		}
	})
}

func FuzzSplit(f *testing.F) {
	f.Add(wholeSpec{flags: statetrack.ACK, payload: payloadOf(3000), options: tsOption}.build(f), uint16(1500))
	f.Add(wholeSpec{v6: true, flags: statetrack.FIN | statetrack.ACK, payload: payloadOf(5000)}.build(f), uint16(1280))
	f.Add(wholeSpec{flags: statetrack.SYN}.build(f), uint16(576))
	for _, b := range seedPackets(f) {
		f.Add(b, uint16(1500))
	}
	p := NewParser()
	f.Fuzz(func(t *testing.T, pkt []byte, mtu uint16) {
		in := append([]byte(nil), pkt...)
		var orig statetrack.Segment
		l, err := p.DecodeLayout(in, &orig)
		if err != nil {
			return
		}
		segs, err := l.Split(in, int(mtu))
		if !bytes.Equal(in, pkt) {
			t.Fatal("input modified")
		}
		if err != nil {
			return
		}
		var payload []byte
		for i, s := range segs {
			if len(segs) > 1 && len(s) > int(mtu) {
				t.Fatalf("segment %d: %d bytes > mtu %d", i, len(s), mtu)
			}
			var seg statetrack.Segment
			sl, err := p.DecodeLayout(s, &seg)
			if err != nil {
				t.Fatalf("segment %d does not decode: %v", i, err)
			}
			if !valid(s, sl) {
				t.Fatalf("segment %d: checksums do not verify", i)
			}
			if seg.Src != orig.Src || seg.Dst != orig.Dst || seg.Ack != orig.Ack || uint32(seg.Seq) != uint32(orig.Seq)+uint32(len(payload)) {
				t.Fatalf("segment %d: %+v does not continue %+v after %d bytes", i, seg, orig, len(payload))
			}
			payload = append(payload, s[sl.payload:]...)
		}
		if !bytes.Equal(payload, pkt[l.payload:l.end]) {
			t.Fatal("payload not preserved")
		}
	})
}
