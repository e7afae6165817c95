package decode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// wholeSpec describes a whole test packet for the rewriting tests; build
// serializes it with gopacket, lengths and checksums computed: the
// reference every rewrite is compared with.
type wholeSpec struct {
	v6      bool
	flags   statetrack.Flags
	seq     uint32
	id      uint16 // IPv4 identification
	df      bool   // IPv4 don't fragment
	payload []byte
	options []layers.TCPOption
}

func (s wholeSpec) build(t testing.TB) []byte {
	t.Helper()
	tcp := tcpSeg(s.flags, s.seq, 77, s.options)
	if s.v6 {
		return packet(t, ip6(layers.IPProtocolTCP), nil, tcp, s.payload)
	}
	ip := ip4()
	ip.Id = s.id
	if s.df {
		ip.Flags = layers.IPv4DontFragment
	}
	return packet(t, ip, nil, tcp, s.payload)
}

// payloadOf returns n bytes of payload in which a misplaced chunk shows.
func payloadOf(n int) []byte {
	p := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{}).Read(p)
	return p
}

// tsOption is the timestamp option of Linux data segments: 12 bytes.
var tsOption = []layers.TCPOption{
	{OptionType: layers.TCPOptionKindNop},
	{OptionType: layers.TCPOptionKindNop},
	{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 1, 0, 0, 0, 2, 0}},
}

// layoutOf returns the layout of a packet that must have one.
func layoutOf(t testing.TB, pkt []byte) Layout {
	t.Helper()
	var seg statetrack.Segment
	l, err := NewParser().DecodeLayout(pkt, &seg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// split is what a sender does with a copy: DecodeLayout, then Split.
func split(pkt []byte, mtu int) ([][]byte, error) {
	var seg statetrack.Segment
	l, err := NewParser().DecodeLayout(pkt, &seg)
	if err != nil {
		return nil, err
	}
	return l.Split(pkt, mtu)
}

func TestDecodeLayout(t *testing.T) {
	p := NewParser()
	for _, tc := range []struct {
		name string
		pkt  []byte
		want Layout
	}{
		{"ipv4 syn with options", wholeSpec{flags: statetrack.SYN, seq: 1000, options: tsOption}.build(t),
			Layout{tcp: 20, payload: 52, end: 52}},
		{"ipv6 data", wholeSpec{v6: true, flags: statetrack.ACK, payload: payloadOf(100)}.build(t),
			Layout{v6: true, tcp: 40, payload: 60, end: 160}},
		{"ipv4 data and link-layer padding", append(wholeSpec{flags: statetrack.ACK, payload: payloadOf(10)}.build(t), 0, 0, 0),
			Layout{tcp: 20, payload: 40, end: 50}},
	} {
		var want, got statetrack.Segment
		if err := p.Decode(tc.pkt, &want); err != nil {
			t.Fatal(err)
		}
		l, err := p.DecodeLayout(tc.pkt, &got)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != want {
			t.Errorf("%s: DecodeLayout segment %+v, Decode %+v", tc.name, got, want)
		}
		if l != tc.want {
			t.Errorf("%s: layout %+v, want %+v", tc.name, l, tc.want)
		}
	}
	// A packet that decodes but cannot be rewritten leaves seg as it was.
	dst6 := v6(t, layers.IPProtocolIPv6Destination, ext6(layers.IPProtocolTCP), tcpSeg(statetrack.ACK, 9, 10, nil), 100)
	seg := seg4(statetrack.RST, 1, 2, 3)
	if _, err := p.DecodeLayout(dst6, &seg); err == nil || seg != seg4(statetrack.RST, 1, 2, 3) {
		t.Errorf("ipv6 extension headers: err %v, segment %+v, want an error and the segment unchanged", err, seg)
	}
}

func TestSplitFitsIsCopy(t *testing.T) {
	want := wholeSpec{flags: statetrack.ACK, payload: payloadOf(100)}.build(t)
	th := layoutOf(t, want).tcp
	in := append([]byte(nil), want...)
	binary.BigEndian.PutUint16(in[th+16:], 0x1234)
	segs, err := split(in, 1500)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 || !bytes.Equal(segs[0], want) {
		t.Fatalf("got %d segments, first equal to reference: %v", len(segs), len(segs) > 0 && bytes.Equal(segs[0], want))
	}
	if binary.BigEndian.Uint16(in[th+16:]) != 0x1234 {
		t.Error("Split modified its input")
	}
	segs[0][0] = 0
	if in[0] == 0 {
		t.Error("result aliases the input")
	}
}

func TestSplitGSO(t *testing.T) {
	const mtu = 1500
	for _, v6 := range []bool{false, true} {
		name := "v4"
		if v6 {
			name = "v6"
		}
		t.Run(name, func(t *testing.T) {
			orig := wholeSpec{v6: v6, flags: statetrack.ACK | statetrack.PSH | statetrack.FIN | statetrack.CWR, df: true,
				seq: 0xffffe000, id: 0xfffe, payload: payloadOf(10000), options: tsOption}
			super := orig.build(t)
			th := layoutOf(t, super).tcp
			hdr := th + 32                    // 20 + 12 bytes of options
			super[th+16], super[th+17] = 0, 0 // checksum not ready
			mss := mtu - hdr
			segs, err := split(super, mtu)
			if err != nil {
				t.Fatal(err)
			}
			wantN := (10000 + mss - 1) / mss
			if len(segs) != wantN {
				t.Fatalf("got %d segments, want %d", len(segs), wantN)
			}
			for i, seg := range segs {
				want := orig
				want.seq = orig.seq + uint32(i*mss)
				want.id = orig.id + uint16(i)
				want.payload = orig.payload[i*mss : min((i+1)*mss, len(orig.payload))]
				if i < len(segs)-1 {
					want.flags &^= statetrack.FIN | statetrack.PSH
				}
				if i > 0 {
					want.flags &^= statetrack.CWR
				}
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

func TestRewriteErrors(t *testing.T) {
	good := wholeSpec{flags: statetrack.ACK, payload: payloadOf(50)}.build(t)
	udp := append([]byte(nil), good...)
	udp[9] = 17
	frag := append([]byte(nil), good...)
	frag[6] |= 0x20 // more fragments
	v6ext := wholeSpec{v6: true, flags: statetrack.ACK}.build(t)
	v6ext[6] = 0 // hop-by-hop options
	dst6 := v6(t, layers.IPProtocolIPv6Destination, ext6(layers.IPProtocolTCP), tcpSeg(statetrack.ACK, 9, 10, nil), 100)
	for _, tc := range []struct {
		name string
		pkt  []byte
		mtu  int
		want error
	}{
		{"empty", nil, 1500, ErrTruncated},
		{"cut in the payload", good[:len(good)-10], 1500, ErrTruncated},
		{"cut in the tcp header", good[:30], 1500, ErrTruncated},
		{"udp", udp, 1500, ErrUnsupported},
		{"fragment", frag, 1500, ErrUnsupported},
		{"ipv6 extension header", v6ext, 1500, ErrUnsupported},
		{"ipv6 destination options", dst6, 1500, ErrUnsupported},
		{"ip version 5", append([]byte{0x50}, good[1:]...), 1500, ErrUnsupported},
		{"mtu below headers", good, 40, ErrUnsupported},
	} {
		if _, err := split(tc.pkt, tc.mtu); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}
