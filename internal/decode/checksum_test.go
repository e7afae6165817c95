package decode

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

func TestFixChecksumsMatchesGopacket(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec wholeSpec
	}{
		{"v4 syn", wholeSpec{flags: statetrack.SYN, seq: 1000, id: 7, df: true, options: tsOption}},
		{"v4 odd payload", wholeSpec{flags: statetrack.ACK | statetrack.PSH, seq: 0xfffffff0, payload: payloadOf(1001)}},
		{"v6 syn", wholeSpec{v6: true, flags: statetrack.SYN, seq: 1, options: tsOption}},
		{"v6 odd payload", wholeSpec{v6: true, flags: statetrack.ACK, payload: payloadOf(333)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.spec.build(t)
			th := layoutOf(t, want).tcp
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
					binary.BigEndian.PutUint16(p[th+16:], fold(layoutOf(t, p).pseudoHeader(p)))
				}},
			} {
				got := append([]byte(nil), want...)
				damage.fn(got)
				if bytes.Equal(got, want) {
					t.Fatalf("%s: damage did not change the packet", damage.name)
				}
				layoutOf(t, got).FixChecksums(got)
				if !bytes.Equal(got, want) {
					t.Errorf("%s: checksums differ from gopacket's:\n got % x\nwant % x", damage.name, got[:th+20], want[:th+20])
				}
			}
		})
	}
}

// valid reports whether the checksums of pkt, laid out as l, verify.
func valid(pkt []byte, l Layout) bool {
	if !l.v6 && fold(sum(0, pkt[:l.tcp])) != 0xffff {
		return false
	}
	return fold(sum(l.pseudoHeader(pkt), pkt[l.tcp:l.end])) == 0xffff
}
