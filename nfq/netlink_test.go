package nfq

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParsePacket(t *testing.T) {
	pkt := tcpSpec{ack: true, payload: payloadOf(100)}.build(t)
	var m packetMsg
	msg := packetMessage(42, 0x1234, pkt[:60], len(pkt))
	if !parsePacket(msg[nlmsgHdrLen:], &m) {
		t.Fatal("no packet id")
	}
	if m.id != 42 || m.mark != 0x1234 || m.wireLen != len(pkt) || string(m.payload) != string(pkt[:60]) {
		t.Errorf("parsed id %d mark %#x wire %d payload %d bytes", m.id, m.mark, m.wireLen, len(m.payload))
	}
	msg = packetMessage(7, 0, pkt, 0)
	if !parsePacket(msg[nlmsgHdrLen:], &m) || m.mark != 0 || m.wireLen != len(pkt) || len(m.payload) != len(pkt) {
		t.Errorf("whole packet: %+v", m)
	}
	for _, bad := range [][]byte{nil, {0, 0}, msg[nlmsgHdrLen : nlmsgHdrLen+6]} {
		if parsePacket(bad, &m) {
			t.Errorf("parsed %x", bad)
		}
	}
}

// packetMessage builds an NFQNL_MSG_PACKET message as the kernel sends it:
// packet header, mark (when not 0), payload and, when wireLen is more than
// the payload, the captured length.
func packetMessage(id, mark uint32, pkt []byte, wireLen int) []byte {
	attr := func(b []byte, typ uint16, v []byte) []byte {
		b = binary.NativeEndian.AppendUint16(b, uint16(nlattrLen+len(v)))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = append(b, v...)
		return append(b, make([]byte, align4(len(v))-len(v))...)
	}
	body := []byte{unix.AF_INET, unix.NFNETLINK_V0, 0, 100}
	body = attr(body, nfqaPacketHdr, append(binary.BigEndian.AppendUint32(nil, id), 0x08, 0x00, 2))
	if mark != 0 {
		body = attr(body, nfqaMark, binary.BigEndian.AppendUint32(nil, mark))
	}
	if wireLen > len(pkt) {
		body = attr(body, nfqaCapLen, binary.BigEndian.AppendUint32(nil, uint32(wireLen)))
	}
	body = attr(body, nfqaPayload, pkt)
	b := binary.NativeEndian.AppendUint32(nil, uint32(nlmsgHdrLen+len(body)))
	b = binary.NativeEndian.AppendUint16(b, msgType(nfqnlMsgPacket))
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint64(b, 0)
	return append(b, body...)
}
