package e2e

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// TestTCPChecksumOK checks the checksum oracle itself (no root needed): it
// accepts packets gopacket serialized with their checksums, IPv4 and IPv6,
// and refuses them once a byte of the segment or the pseudo-header changed,
// or when the capture cut the segment short. (Offsets: Ethernet, an IP
// header without options, a 20-byte TCP header, a 5-byte payload; an IPv4
// frame is padded to 60 bytes, so the payload is not at the end.)
func TestTCPChecksumOK(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		frame := buildFrame(t, v6)
		if err := tcpChecksumOK(frame, layers.LinkTypeEthernet); err != nil {
			t.Fatalf("v6=%t: valid packet refused: %v", v6, err)
		}
		tcpAt := 14 + 20
		if v6 {
			tcpAt = 14 + 40
		}
		for name, damage := range map[string]func([]byte) []byte{
			"sequence number":     func(f []byte) []byte { f[tcpAt+4] ^= 0x01; return f },
			"payload":             func(f []byte) []byte { f[tcpAt+20] ^= 0x80; return f },
			"destination address": func(f []byte) []byte { f[tcpAt-1] ^= 0x01; return f },
			"cut short":           func(f []byte) []byte { return f[:tcpAt+20+4] },
		} {
			bad := damage(append([]byte(nil), frame...))
			if err := tcpChecksumOK(bad, layers.LinkTypeEthernet); err == nil {
				t.Errorf("v6=%t: %s changed, checksum still accepted", v6, name)
			}
		}
	}
}

func buildFrame(t *testing.T, v6 bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	tcp := &layers.TCP{SrcPort: 40312, DstPort: 8080, Seq: 1000, Ack: 2000, FIN: true, ACK: true, Window: 512}
	var ip gopacket.NetworkLayer
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: net.ParseIP("fd00:1::2"), DstIP: net.ParseIP("fd00:2::2")}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip = &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: net.ParseIP("198.18.1.2").To4(), DstIP: net.ParseIP("198.19.2.2").To4()}
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip.(gopacket.SerializableLayer), tcp, gopacket.Payload("pong\n"))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
