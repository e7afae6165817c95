package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// pred selects captured packets.
type pred func(netlabtest.Packet) bool

// from selects packets sent by addr.
func from(addr netip.Addr) pred {
	return func(p netlabtest.Packet) bool { return p.Src.Addr() == addr }
}

// Packet shapes, by flags (PSH, ECE and CWR ignored).
var (
	isSyn    pred = func(p netlabtest.Packet) bool { return core(p) == statetrack.SYN }
	isSynAck pred = func(p netlabtest.Packet) bool { return core(p) == statetrack.SYN|statetrack.ACK }
	isFin    pred = func(p netlabtest.Packet) bool { return core(p)&statetrack.FIN != 0 && core(p)&statetrack.RST == 0 }
	isRst    pred = func(p netlabtest.Packet) bool { return core(p)&statetrack.RST != 0 }
	// isPureAck: an ACK without payload, SYN, FIN or RST.
	isPureAck pred = func(p netlabtest.Packet) bool { return core(p) == statetrack.ACK && p.Len == 0 }
	// isData: a segment with payload and neither SYN, FIN nor RST.
	isData pred = func(p netlabtest.Packet) bool { return core(p)&^statetrack.ACK == 0 && p.Len > 0 }
)

func core(p netlabtest.Packet) statetrack.Flags {
	return p.Flags &^ (statetrack.PSH | statetrack.ECE | statetrack.CWR | statetrack.URG)
}

// onPort selects packets to or from port.
func onPort(port uint16) pred {
	return func(p netlabtest.Packet) bool { return p.Src.Port() == port || p.Dst.Port() == port }
}

// ackOf selects packets acknowledging exactly seq.
func ackOf(seq uint32) pred { return func(p netlabtest.Packet) bool { return uint32(p.Ack) == seq } }

// pick returns the packets that satisfy every predicate.
func pick(pkts []netlabtest.Packet, preds ...pred) []netlabtest.Packet {
	var out []netlabtest.Packet
next:
	for _, p := range pkts {
		for _, f := range preds {
			if !f(p) {
				continue next
			}
		}
		out = append(out, p)
	}
	return out
}

// count is len(pick(...)).
func count(pkts []netlabtest.Packet, preds ...pred) int { return len(pick(pkts, preds...)) }

// atLeast returns a condition for Capture.WaitFor: n packets match.
func atLeast(n int, preds ...pred) func([]netlabtest.Packet) bool {
	return func(pkts []netlabtest.Packet) bool { return count(pkts, preds...) >= n }
}

// dump renders packets one per line, for failure messages.
func dump(pkts []netlabtest.Packet) string {
	var b strings.Builder
	for _, p := range pkts {
		b.WriteString(p.String() + "\n")
	}
	return b.String()
}

// sameSegment checks that pkts are n copies of one segment (same sender,
// same sequence number, same flags) and returns the gaps between them.
func sameSegment(t *testing.T, what string, pkts []netlabtest.Packet, n int, all []netlabtest.Packet) []time.Duration {
	t.Helper()
	if len(pkts) != n {
		t.Errorf("%s: %d packets, want %d:\n%s", what, len(pkts), n, dump(all))
		return nil
	}
	var gaps []time.Duration
	for _, p := range pkts[1:] {
		if p.Src != pkts[0].Src || p.Seq != pkts[0].Seq || core(p) != core(pkts[0]) {
			t.Errorf("%s: %v and %v are not the same segment:\n%s", what, pkts[0], p, dump(all))
		}
		gaps = append(gaps, p.Time.Sub(pkts[0].Time))
	}
	return gaps
}

// within checks lo <= d <= hi.
func within(t *testing.T, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d > hi {
		t.Errorf("%s = %v, want between %v and %v", what, d.Round(time.Millisecond), lo, hi)
	}
}

// rawTCP returns the raw bytes of the TCP records of a finished capture,
// in the order of Capture.Stop's packets.
func rawTCP(t *testing.T, c *netlabtest.Capture) ([][]byte, layers.LinkType) {
	t.Helper()
	f, err := os.Open(c.File())
	if err != nil {
		t.Fatalf("open capture: %v", err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("read capture %s: %v", c.File(), err)
	}
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return out, r.LinkType()
		}
		if err != nil {
			t.Fatalf("read capture %s: %v", c.File(), err)
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		if p.Layer(layers.LayerTypeTCP) != nil && p.NetworkLayer() != nil {
			out = append(out, data)
		}
	}
}

// tcpChecksumOK decodes a captured frame with gopacket and verifies its TCP
// checksum over the pseudo-header, the header and the payload (the whole
// segment must be in the capture: a control packet is). It returns an
// error naming what is wrong.
func tcpChecksumOK(frame []byte, lt layers.LinkType) error {
	p := gopacket.NewPacket(frame, lt, gopacket.Default)
	tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok {
		return errors.New("no TCP layer")
	}
	segment := append(append([]byte(nil), tcp.Contents...), tcp.Payload...)
	var sum uint32
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		if int(ip.Length)-int(ip.IHL)*4 != len(segment) {
			return fmt.Errorf("segment cut short: %d of %d bytes captured", len(segment), int(ip.Length)-int(ip.IHL)*4)
		}
		sum = onesSum(onesSum(0, ip.SrcIP.To4()), ip.DstIP.To4())
	case *layers.IPv6:
		if int(ip.Length) != len(segment) {
			return fmt.Errorf("segment cut short: %d of %d bytes captured", len(segment), ip.Length)
		}
		sum = onesSum(onesSum(0, ip.SrcIP.To16()), ip.DstIP.To16())
	default:
		return errors.New("no IP layer")
	}
	sum += uint32(layers.IPProtocolTCP) + uint32(len(segment))
	if got := fold(onesSum(sum, segment)); got != 0xffff {
		return fmt.Errorf("TCP checksum %#04x does not verify (sum %#04x, want 0xffff)", tcp.Checksum, got)
	}
	return nil
}

func onesSum(sum uint32, b []byte) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// stamp formats packet times in failure messages.
const stamp = "15:04:05.000000"
