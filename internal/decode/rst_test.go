package decode

import (
	"net/netip"
	"testing"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestAppendRST: a built RST decodes back to its segment, with checksums
// a receiver accepts, in IPv4 and IPv6.
func TestAppendRST(t *testing.T) {
	p := NewParser()
	for _, seg := range []statetrack.Segment{
		{Src: netip.MustParseAddrPort("198.19.2.2:8080"), Dst: netip.MustParseAddrPort("198.18.1.2:40000"),
			Seq: 0, Ack: 1001, Flags: statetrack.RST | statetrack.ACK},
		{Src: netip.MustParseAddrPort("[fd00:1::2]:40000"), Dst: netip.MustParseAddrPort("[fd00:2::2]:8080"),
			Seq: 0xfffffff0, Flags: statetrack.RST},
	} {
		pkt := AppendRST([]byte{0xaa}, &seg)[1:]
		var got statetrack.Segment
		l, err := p.DecodeLayout(pkt, &got)
		if err != nil {
			t.Fatalf("%v: %v", seg, err)
		}
		if got != seg {
			t.Errorf("decoded %+v, want %+v", got, seg)
		}
		fixed := append([]byte(nil), pkt...)
		l.FixChecksums(fixed)
		if string(fixed) != string(pkt) {
			t.Errorf("%v: checksums not set: % x, want % x", seg, pkt, fixed)
		}
		if len(pkt) > RSTLen {
			t.Errorf("%d bytes, more than RSTLen", len(pkt))
		}
	}
}
