//go:build linux

package nfq

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// InjectMark is the packet mark (SO_MARK) of injected copies ("tcc" and 1):
// the interception rules (iptables.go) let packets carrying exactly this
// mark pass instead of queueing them again.
const InjectMark uint32 = 0x74636301

// fallbackMTU is used when the route toward a copy's destination cannot be
// looked up: the IPv6 minimum, safe on any path.
const fallbackMTU = 1280

// Injector sends copies of intercepted packets (the duplicate action)
// through raw sockets: socket(AF_INET, SOCK_RAW, IPPROTO_RAW) and its IPv6
// twin, both of which take the packet with its IP header as is. Every copy
// carries the socket mark given to NewInjector, so the interception rules
// can let it pass instead of queueing it again.
//
// A copy leaves through the routing table toward its destination address,
// whatever its source: on a router (forward mode) a copy with the client's
// address goes out toward the server like the original; on a host (local
// mode) a copy of an incoming packet is delivered locally, a copy of an
// outgoing one goes out.
//
// An Injector's sockets belong to the network namespace of the thread that
// called NewInjector. Its methods are not safe for concurrent use.
type Injector struct {
	fd4, fd6 int
	routes   *netlink.Handle
	parser   *decode.Parser
}

// NewInjector opens the raw sockets and a route lookup handle in the
// calling thread's network namespace. It needs CAP_NET_RAW and, for the
// mark, CAP_NET_ADMIN.
func NewInjector(mark uint32) (*Injector, error) {
	in := &Injector{fd4: -1, fd6: -1, parser: decode.NewParser()}
	var err error
	if in.fd4, err = rawSocket(unix.AF_INET, mark); err != nil {
		return nil, fmt.Errorf("open ipv4 raw socket: %w", err)
	}
	if in.fd6, err = rawSocket(unix.AF_INET6, mark); err != nil {
		in.Close()
		return nil, fmt.Errorf("open ipv6 raw socket: %w", err)
	}
	if in.routes, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		in.Close()
		return nil, fmt.Errorf("open route lookup handle: %w", err)
	}
	return in, nil
}

func rawSocket(family int, mark uint32) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set SO_MARK: %w", err)
	}
	// A full send buffer must not hold the queue's timer goroutine for long.
	tv := unix.NsecToTimeval(sendTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set SO_SNDTIMEO: %w", err)
	}
	return fd, nil
}

// Send sends one copy of pkt, a whole IPv4 or IPv6 TCP packet as the queue
// handed it over. Its checksums are recomputed (a packet handed over with
// the GSO flag may carry a partial TCP checksum), and a GSO super-packet
// larger than the MTU of the route toward its destination is cut into
// segments (decode.Layout.Split). pkt is not modified. It returns how many
// packets went out.
func (in *Injector) Send(pkt []byte) (int, error) {
	var seg statetrack.Segment
	l, err := in.parser.DecodeLayout(pkt, &seg)
	if err != nil {
		return 0, fmt.Errorf("send copy: %w", err)
	}
	dst := seg.Dst.Addr()
	mtu, ifindex := in.route(dst)
	segs, err := l.Split(pkt, mtu)
	if err != nil {
		return 0, fmt.Errorf("send copy to %s: %w", dst, err)
	}
	var sa unix.Sockaddr
	fd := in.fd4
	if dst.Is6() {
		fd = in.fd6
		s6 := &unix.SockaddrInet6{Addr: dst.As16()}
		if dst.IsLinkLocalUnicast() {
			s6.ZoneId = uint32(ifindex)
		}
		sa = s6
	} else {
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	}
	for i, seg := range segs {
		if err := sendto(fd, seg, sa); err != nil {
			return i, fmt.Errorf("send copy to %s (%d bytes): %w", dst, len(seg), err)
		}
	}
	return len(segs), nil
}

// sendTimeout bounds a copy's send into a full socket buffer.
const sendTimeout = time.Second

// sendto sends b to sa, again when a signal interrupts the send (a send
// with a timeout, SO_SNDTIMEO, that waits for buffer space is never
// restarted: signal(7)), within sendTimeout in all.
func sendto(fd int, b []byte, sa unix.Sockaddr) error {
	deadline := time.Now().Add(sendTimeout)
	for {
		if err := unix.Sendto(fd, b, 0, sa); !errors.Is(err, unix.EINTR) || time.Now().After(deadline) {
			return err
		}
	}
}

// route returns the MTU of the route toward dst (the route's own MTU if
// it has one, else its device's) and the device's index, or fallbackMTU
// and 0 when the lookup fails.
func (in *Injector) route(dst netip.Addr) (mtu, ifindex int) {
	rs, err := in.routes.RouteGet(net.IP(dst.AsSlice()))
	if err != nil || len(rs) == 0 {
		return fallbackMTU, 0
	}
	r := rs[0]
	mtu = r.MTU
	if link, err := in.routes.LinkByIndex(r.LinkIndex); err == nil && (mtu == 0 || link.Attrs().MTU < mtu) {
		mtu = link.Attrs().MTU
	}
	if mtu <= 0 {
		mtu = fallbackMTU
	}
	return mtu, r.LinkIndex
}

// Close closes the sockets.
func (in *Injector) Close() error {
	var errs []error
	for _, fd := range []*int{&in.fd4, &in.fd6} {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	if in.routes != nil {
		in.routes.Close()
		in.routes = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close injector: %w", err)
	}
	return nil
}
