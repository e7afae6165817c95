//go:build linux

package nfq

import (
	"log/slog"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/execute"
)

// DefaultSocketBuffer is the netlink receive buffer a Queue asks for by
// default: the kernel's default (net.core.rmem_default, typically about
// 208 KiB) overflows under load, and each overflow drops a packet (a user
// drop in /proc/net/netfilter/nfnetlink_queue).
const DefaultSocketBuffer = 8 << 20

// HeaderCopyRange is a copy range that holds every header the tracker
// reads: IPv6's 40 bytes, 156 bytes of extension headers and a TCP header
// with 40 bytes of options (60), or IPv4 with options (60) and TCP (60)
// with room to spare. A packet whose headers go beyond it does not decode
// and is accepted without the Handler (Stats.DecodeFailures).
const HeaderCopyRange = 256

// defaultMaxQueueLen is the kernel's default queue length.
const defaultMaxQueueLen = 1024

// Options configure a Queue. The zero value of each field selects its
// default.
type Options struct {
	// Queue is the NFQUEUE number to bind.
	Queue uint16
	// CopyRange is how many bytes of each packet the kernel copies to us.
	// 0 (the default) copies whole packets, up to the kernel's maximum of
	// 65531 bytes. A short range (HeaderCopyRange: the headers) is much
	// faster for bulk traffic, but a packet copied in part cannot be
	// duplicated: its copies are skipped and counted.
	CopyRange uint32
	// Quiet marks accept verdicts for quiet connections
	// (InstallOptions.Quiet): VerdictMark on each, and QuietMark when the
	// Handler's verdict lets the connection go quiet (Verdict.Quiet).
	Quiet bool
	// Blackhole marks the verdicts that start a blackhole for the kernel
	// to keep the connection dark (InstallOptions.Blackhole), and heals
	// blackholes with a duration by clearing their connection mark bits.
	// Without it the Handler's drops alone keep a connection dark.
	Blackhole bool
	// MaxQueueLen is how many packets the kernel keeps waiting for a
	// verdict, held packets included; beyond it, packets pass unseen
	// (fail-open). 0 selects the kernel's default, 1024.
	MaxQueueLen uint32
	// SocketBuffer is the netlink receive buffer in bytes, set with
	// SO_RCVBUFFORCE. Default DefaultSocketBuffer.
	SocketBuffer int
	// Poll is how long the reader keeps polling the socket after a burst
	// before it blocks in a read: a packet that comes meanwhile (the
	// SYN-ACK after a SYN, the next packets of a busy queue) is read
	// without the wake-up of a blocked thread, which costs tens of
	// microseconds on a virtual machine. The price is up to Poll of one
	// CPU after each burst. 0 selects DefaultPoll; negative: never poll.
	Poll time.Duration
	// TimeVerdicts records, for every verdict given when its packet is
	// read, how long after the read the write that carried the verdict
	// returned (Stats.VerdictLatency); a held packet's release is not
	// timed. It costs a clock read per burst and two atomic adds per
	// packet. Default: off.
	TimeVerdicts bool
	// Logger receives the queue's diagnostics. Default: discarded.
	Logger *slog.Logger
	// Tap, when not nil, is shown every packet the Handler decided on
	// and every copy sent (internal/tap records them); packets that do
	// not decode are not shown.
	Tap execute.Tap
}

// DefaultPoll is Options.Poll's default. Measured with bench/ on a 2-vCPU
// virtual machine (other machines will differ; rerun make bench there):
// connect() time added by the queue at p50, without polling 106-133 µs,
// 100 µs of polling 79-86 µs, 200 µs 68-98 µs with short connections/s
// down by a tenth (the poller takes CPU from the peers); on another such
// VM, 1 ms against 100 µs made no clear difference to connect() and took
// a quarter off short connections/s (README "Benchmarks").
const DefaultPoll = 100 * time.Microsecond
