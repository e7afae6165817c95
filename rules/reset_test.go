package rules

import (
	"net/netip"
	"testing"

	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

// TestResets: each receiver gets the sequence numbers it accepts (the
// receiver of a keepalive probe one past the probe's, which lies one
// below its rcv_nxt), a SYN is refused, a listener and an RST get
// nothing, and outside moves the exact number one past.
func TestResets(t *testing.T) {
	c, s := netip.MustParseAddrPort("198.18.1.2:40000"), netip.MustParseAddrPort("198.19.2.2:8080")
	obs := func(from statetrack.Side, f statetrack.Flags, seq, ack uint32) *statetrack.Observation {
		seg := statetrack.Segment{Src: c, Dst: s, Seq: seqnum.Value(seq), Ack: seqnum.Value(ack), Flags: f}
		if from == statetrack.Server {
			seg.Src, seg.Dst = s, c
		}
		return &statetrack.Observation{Seg: seg, From: from}
	}
	rst := statetrack.RST
	probe := func(o *statetrack.Observation) *statetrack.Observation {
		o.Kind = statetrack.Keepalive
		return o
	}
	for _, tc := range []struct {
		name    string
		o       *statetrack.Observation
		to      Endpoints
		outside bool
		want    []statetrack.Segment
	}{
		{"data to both", obs(statetrack.Client, statetrack.ACK, 100, 500), Both, false, []statetrack.Segment{
			{Src: s, Dst: c, Seq: 500, Flags: rst}, {Src: c, Dst: s, Seq: 100, Flags: rst}}},
		{"data outside", obs(statetrack.Server, statetrack.ACK|statetrack.PSH, 500, 100), ToClient, true, []statetrack.Segment{
			{Src: s, Dst: c, Seq: 501, Flags: rst}}},
		{"syn refused", obs(statetrack.Client, statetrack.SYN, 100, 0), Both, false, []statetrack.Segment{
			{Src: s, Dst: c, Ack: 101, Flags: rst | statetrack.ACK}}},
		{"syn-ack to client", obs(statetrack.Server, statetrack.SYN|statetrack.ACK, 500, 101), ToClient, true, []statetrack.Segment{
			{Src: s, Dst: c, Seq: 501, Ack: 101, Flags: rst | statetrack.ACK}}},
		{"syn-ack to server", obs(statetrack.Server, statetrack.SYN|statetrack.ACK, 500, 101), ToServer, false, []statetrack.Segment{
			{Src: c, Dst: s, Seq: 101, Flags: rst}}},
		{"rst", obs(statetrack.Client, rst, 100, 0), Both, false, nil},
		{"keepalive probe to both", probe(obs(statetrack.Client, statetrack.ACK, 99, 500)), Both, false, []statetrack.Segment{
			{Src: s, Dst: c, Seq: 500, Flags: rst}, {Src: c, Dst: s, Seq: 100, Flags: rst}}},
		{"keepalive probe outside", probe(obs(statetrack.Client, statetrack.ACK, 99, 500)), ToServer, true, []statetrack.Segment{
			{Src: c, Dst: s, Seq: 101, Flags: rst}}},
	} {
		rs := resets(tc.o, tc.to, tc.outside)
		if rs.N != len(tc.want) {
			t.Errorf("%s: %d resets %v, want %v", tc.name, rs.N, rs.Seg[:rs.N], tc.want)
			continue
		}
		for i, w := range tc.want {
			if rs.Seg[i] != w {
				t.Errorf("%s: reset %d = %+v, want %+v", tc.name, i, rs.Seg[i], w)
			}
			// Only an RST acknowledging a SYN stays exact outside the window.
			if exact := !tc.outside || w.Flags&statetrack.ACK != 0; rs.Exact[i] != exact {
				t.Errorf("%s: reset %d exact = %v, want %v", tc.name, i, rs.Exact[i], exact)
			}
		}
	}
}
