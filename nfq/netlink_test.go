package nfq

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

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

// TestRecvFromAndWrite: the reader's system calls, the non-blocking ones
// made around the scheduler's bookkeeping (RawSyscall), on a socket pair:
// a non-blocking read of an empty socket is EAGAIN and a blocking one
// waits out its receive timeout; a write returns a nil error and its
// length, and a failed write its error.
func TestRecvFromAndWrite(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	const timeout = 20 * time.Millisecond
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fds[0], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, e := recvFrom(fds[0], buf, unix.MSG_DONTWAIT); e != unix.EAGAIN {
		t.Errorf("non-blocking read of an empty socket: %v, want EAGAIN", e)
	}
	start := time.Now()
	if _, e := recvFrom(fds[0], buf, 0); e != unix.EAGAIN {
		t.Errorf("blocking read of an empty socket: %v, want EAGAIN", e)
	}
	if waited := time.Since(start); waited < timeout/2 {
		t.Errorf("blocking read returned after %v, before its %v timeout", waited, timeout)
	}
	k := fdKernel{fds[1]}
	for _, msg := range []string{"verdict", "another verdict"} {
		if n, err := k.Write([]byte(msg)); n != len(msg) || err != nil {
			t.Fatalf("write %q: %d, %v; want %d, nil", msg, n, err, len(msg))
		}
	}
	for _, want := range []string{"verdict", "another verdict"} {
		if n, e := recvFrom(fds[0], buf, unix.MSG_DONTWAIT); e != 0 || string(buf[:n]) != want {
			t.Errorf("read %q, %v; want %q", buf[:max(n, 0)], e, want)
		}
	}
	if err := unix.SetNonblock(fds[1], true); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ { // the peer's queue fills: EAGAIN
		_, err := k.Write([]byte("verdict"))
		if err != nil {
			if !errors.Is(err, unix.EAGAIN) {
				t.Errorf("write to a full socket: %v, want EAGAIN", err)
			}
			break
		}
		if i == 1<<20 {
			t.Fatal("a socket pair took a million datagrams unread")
		}
	}
}
