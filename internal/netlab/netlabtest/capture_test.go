package netlabtest

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// ethFrame serializes an Ethernet frame carrying ip, then l4 and n bytes
// of payload.
func ethFrame(t *testing.T, ip gopacket.SerializableLayer, l4 gopacket.SerializableLayer, n int) []byte {
	t.Helper()
	et := layers.EthernetTypeIPv4
	if _, ok := ip.(*layers.IPv6); ok {
		et = layers.EthernetTypeIPv6
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: et}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, ip, l4, gopacket.Payload(make([]byte, n))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pcapOf writes frames, each cut at snaplen, as a pcap stream of link type
// link, one second apart from t0.
func pcapOf(t *testing.T, link decode.LinkType, snaplen int, t0 time.Time, frames ...[]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := capture.NewWriter(&b, "test", link, uint32(snaplen), false)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		data := f[:min(len(f), snaplen)]
		if err := w.Write(capture.Frame{Data: data, TS: t0.Add(time.Duration(i) * time.Second), CaptureLen: len(data), OrigLen: len(f)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadPcap(t *testing.T) {
	cli4, srv4 := netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("198.19.2.2")
	cli6, srv6 := netip.MustParseAddr("fd00:1::2"), netip.MustParseAddr("fd00:2::2")
	syn := ethFrame(t, &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: cli4.AsSlice(), DstIP: srv4.AsSlice()},
		&layers.TCP{SrcPort: 40312, DstPort: 8080, Seq: 1000, SYN: true, Window: 64240, DataOffset: 5}, 0)
	udp := ethFrame(t, &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: cli4.AsSlice(), DstIP: srv4.AsSlice()},
		&layers.UDP{SrcPort: 5353, DstPort: 53}, 10)
	data := ethFrame(t, &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: srv6.AsSlice(), DstIP: cli6.AsSlice()},
		&layers.TCP{SrcPort: 8080, DstPort: 40312, Seq: 7, Ack: 1001, ACK: true, PSH: true, Window: 501, DataOffset: 5}, 1000)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	file := pcapOf(t, decode.LinkEthernet, 256, t0, syn, udp, data)

	pkts, err := ReadPcap(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	want := []Packet{
		{Time: t0, Segment: statetrack.Segment{Src: netip.AddrPortFrom(cli4, 40312), Dst: netip.AddrPortFrom(srv4, 8080),
			Seq: 1000, Flags: statetrack.SYN, Window: 64240}},
		// The data segment was cut at the snaplen; its length comes from
		// the IP header.
		{Time: t0.Add(2 * time.Second), Segment: statetrack.Segment{Src: netip.AddrPortFrom(srv6, 8080), Dst: netip.AddrPortFrom(cli6, 40312),
			Seq: 7, Ack: 1001, Flags: statetrack.ACK | statetrack.PSH, Len: 1000, Window: 501}},
	}
	if len(pkts) != len(want) {
		t.Fatalf("got %d packets, want %d: %v", len(pkts), len(want), pkts)
	}
	for i := range want {
		if !pkts[i].Time.Equal(want[i].Time) || pkts[i].Segment != want[i].Segment {
			t.Errorf("packet %d: got %v %+v, want %v %+v", i, pkts[i].Time, pkts[i].Segment, want[i].Time, want[i].Segment)
		}
	}

	// tcpdump writes as it captures: a stream that ends inside the file
	// header or inside a record holds what it holds so far.
	for _, cut := range []struct {
		name string
		n    int // bytes of the file
		want int // packets
	}{{"empty", 0, 0}, {"inside the file header", 10, 0}, {"inside the last record", len(file) - 5, 1}} {
		pkts, err := ReadPcap(bytes.NewReader(file[:cut.n]))
		if err != nil || len(pkts) != cut.want {
			t.Errorf("%s: got %d packets, error %v; want %d packets and no error", cut.name, len(pkts), err, cut.want)
		}
	}

	if _, err := ReadPcap(bytes.NewReader(pcapOf(t, 147, 256, t0, syn))); err == nil {
		t.Error("a link type decode does not know: no error")
	}
}
