//go:build linux

package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The nfnetlink_queue wire format (linux/netfilter/nfnetlink_queue.h).
// go-nfqueue opens the socket; tcpchaos binds the queue, reads packets and
// writes verdicts itself, without allocating: go-nfqueue's reader copies
// every payload, boxes every attribute and builds every verdict message
// anew, and its Register binds and starts that reader in one call.
const (
	nfqnlMsgPacket       = 0
	nfqnlMsgVerdict      = 1
	nfqnlMsgConfig       = 2
	nfqnlMsgVerdictBatch = 3

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2
	nfqaMark       = 3
	nfqaPayload    = 10
	nfqaCapLen     = 13

	nfqaCfgCmd         = 1
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxLen = 3
	nfqaCfgMask        = 4
	nfqaCfgFlags       = 5

	nfqnlCfgCmdBind = 1

	nlmsgHdrLen = 16
	nfgenMsgLen = 4
	nlattrLen   = 4
	// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER.
	nlaTypeMask = 0x3fff

	// verdictMsgLen is a verdict message: header, nfgenmsg, the verdict
	// header attribute; markAttrLen is the optional mark attribute.
	verdictMsgLen = nlmsgHdrLen + nfgenMsgLen + nlattrLen + 8
	markAttrLen   = nlattrLen + 4
)

// msgType returns the netlink message type of an nfnetlink_queue message.
func msgType(m uint16) uint16 { return unix.NFNL_SUBSYS_QUEUE<<8 | m }

// errMalformedMsg: a message from the kernel does not parse.
var errMalformedMsg = errors.New("malformed nfnetlink_queue message")

// packetMsg is one queued packet as the kernel sent it. payload aliases
// the receive buffer.
type packetMsg struct {
	id      uint32
	mark    uint32
	payload []byte
	// wireLen is the packet's length; more than len(payload) when the
	// copy range cut it.
	wireLen int
}

// parsePacket parses the body of an NFQNL_MSG_PACKET message (after the
// netlink header) into m. It reports false when there is no packet id.
func parsePacket(b []byte, m *packetMsg) bool {
	*m = packetMsg{}
	if len(b) < nfgenMsgLen {
		return false
	}
	b = b[nfgenMsgLen:]
	hasID, capLen := false, -1
	for len(b) >= nlattrLen {
		l := int(binary.NativeEndian.Uint16(b))
		if l < nlattrLen || l > len(b) {
			return false
		}
		v := b[nlattrLen:l]
		switch binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask {
		case nfqaPacketHdr:
			if len(v) >= 4 {
				m.id, hasID = binary.BigEndian.Uint32(v), true
			}
		case nfqaMark:
			if len(v) >= 4 {
				m.mark = binary.BigEndian.Uint32(v)
			}
		case nfqaPayload:
			m.payload = v
		case nfqaCapLen:
			if len(v) >= 4 {
				capLen = int(binary.BigEndian.Uint32(v))
			}
		}
		b = b[min(align4(l), len(b)):]
	}
	m.wireLen = len(m.payload)
	if capLen >= 0 {
		m.wireLen = capLen
	}
	return hasID
}

func align4(n int) int { return (n + 3) &^ 3 }

// recvFrom reads one datagram from fd without allocating (unix.Recvfrom
// allocates the source address). flags: 0 or unix.MSG_DONTWAIT.
//
// A read with MSG_DONTWAIT returns at once and is made around the Go
// scheduler's bookkeeping of system calls (RawSyscall6), as the verdicts'
// writes are (fdKernel.Write); a blocking read leaves the scheduler free
// to give the reader's P to another goroutine while it sleeps.
func recvFrom(fd int, b []byte, flags int) (int, unix.Errno) {
	call := unix.Syscall6
	if flags&unix.MSG_DONTWAIT != 0 {
		call = unix.RawSyscall6
	}
	n, _, e := call(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(flags), 0, 0)
	return int(n), e
}

// bindConfig is what bind asks of the kernel.
type bindConfig struct {
	queue       uint16
	copyRange   uint32
	maxQueueLen uint32
	flags       uint32
}

// bind binds the socket of c to the queue and configures it (copy mode and
// range, flags, queue length), as go-nfqueue's Register would, without
// starting a reader. The kernel unbinds the queue when the socket closes.
func bind(c *netlink.Conn, cfg bindConfig) error {
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	steps := []struct {
		what  string
		attrs []netlink.Attribute
	}{
		{"bind", []netlink.Attribute{{Type: nfqaCfgCmd, Data: []byte{nfqnlCfgCmdBind, 0, 0, unix.AF_UNSPEC}}}},
		{"set copy range", []netlink.Attribute{{Type: nfqaCfgParams, Data: append(be32(cfg.copyRange), copyPacket)}}},
		{"set flags and queue length", []netlink.Attribute{
			{Type: nfqaCfgFlags, Data: be32(cfg.flags)},
			{Type: nfqaCfgMask, Data: be32(cfg.flags)},
			{Type: nfqaCfgQueueMaxLen, Data: be32(cfg.maxQueueLen)},
		}},
	}
	for _, s := range steps {
		attrs, err := netlink.MarshalAttributes(s.attrs)
		if err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
		data := append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0}, binary.BigEndian.AppendUint16(nil, cfg.queue)...)
		_, err = c.Execute(netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(msgType(nfqnlMsgConfig)), Flags: netlink.Request | netlink.Acknowledge},
			Data:   append(data, attrs...),
		})
		if err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

// copyPacket is NFQNL_COPY_PACKET.
const copyPacket = 2
