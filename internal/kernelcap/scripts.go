package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// The addresses of the scripted-peer captures.
var (
	kernelAddr = netip.MustParseAddrPort("198.18.0.1:8080")
	peerAddr   = netip.MustParseAddr("198.18.0.2")
)

// peer is a scripted TCP endpoint on raw sockets, against a kernel
// listener, with the capture on its interface.
type peer struct {
	fd   int
	src  netip.AddrPort
	rec  *recording
	kern end
	ln   net.Listener
}

// newPeer builds the namespaces "kernel" and "peer" joined by a veth
// pair, starts the kernel's listener (serve handles each accepted
// connection) and the capture, and opens the peer's raw socket for source
// port port.
func newPeer(l *netlab.Lab, port uint16, serve func(n int, c net.Conn)) (*peer, error) {
	k, err := l.Namespace("kernel")
	if err != nil {
		return nil, err
	}
	p, err := l.Namespace("peer")
	if err != nil {
		return nil, err
	}
	if err := p.IP(fmt.Sprintf("link add eth0 type veth peer name eth0 netns %s\naddr add %s/24 dev eth0\nlink set eth0 up\nlink set lo up", k.Name, peerAddr)); err != nil {
		return nil, err
	}
	if err := k.IP(fmt.Sprintf("addr add %s/24 dev eth0\nlink set eth0 up\nlink set lo up", kernelAddr.Addr())); err != nil {
		return nil, err
	}
	// The peer's own kernel must not answer what the scripted peer gets.
	if _, err := p.Run("iptables", "-A", "INPUT", "-p", "tcp", "-j", "DROP"); err != nil {
		return nil, err
	}
	ln, err := k.Listen("tcp4", kernelAddr.String())
	if err != nil {
		return nil, err
	}
	go func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(n, c)
		}
	}()
	src := netip.AddrPortFrom(peerAddr, port)
	pr := &peer{src: src, ln: ln, kern: end{ns: k, local: kernelAddr, remote: src}}
	err = p.Do(func() (err error) {
		pr.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	if pr.rec, err = record(p, "eth0"); err != nil {
		return nil, err
	}
	time.Sleep(100 * time.Millisecond) // let the link come up
	return pr, nil
}

// close ends the peer's sockets (the recording stays to be written).
func (p *peer) close() {
	p.ln.Close()
	unix.Close(p.fd)
}

// Flags of the peer's segments.
const (
	fSYN = 1 << iota
	fACK
	fRST
	fFIN
	fPSH
)

// send sends one segment to the kernel.
func (p *peer) send(flags int, seq, ack uint32, payload []byte) error {
	v4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
		SrcIP: p.src.Addr().AsSlice(), DstIP: kernelAddr.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(p.src.Port()), DstPort: layers.TCPPort(kernelAddr.Port()),
		Seq: seq, Ack: ack, Window: 65535,
		SYN: flags&fSYN != 0, ACK: flags&fACK != 0, RST: flags&fRST != 0, FIN: flags&fFIN != 0, PSH: flags&fPSH != 0}
	if tcp.SYN {
		tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}
	}
	pkt, err := serialize(v4, tcp, payload, true)
	if err != nil {
		return err
	}
	return unix.Sendto(p.fd, pkt, 0, &unix.SockaddrInet4{Addr: kernelAddr.Addr().As4()})
}

// steps runs the script's steps in order and stops at the first error.
func steps(fns ...func() error) error {
	for _, fn := range fns {
		if err := fn(); err != nil {
			return err
		}
	}
	return nil
}

// handshake opens a connection from isn with 10 bytes of data and returns
// the kernel's next sequence number.
func (p *peer) handshake(isn uint32, data bool) (knxt uint32, err error) {
	if err := p.send(fSYN, isn, 0, nil); err != nil {
		return 0, err
	}
	sa, err := p.rec.expect("SYN-ACK", func(s *segment) bool { return s.tcp.SYN && s.tcp.ACK && s.ack == isn+1 })
	if err != nil {
		return 0, err
	}
	knxt = sa.seq + 1
	if err := p.send(fACK, isn+1, knxt, nil); err != nil {
		return 0, err
	}
	if !data {
		return knxt, nil
	}
	if err := p.send(fACK|fPSH, isn+1, knxt, []byte("0123456789")); err != nil {
		return 0, err
	}
	_, err = p.rec.expect("ACK of the data", func(s *segment) bool { return s.tcp.ACK && s.ack == isn+11 })
	return knxt, err
}

// hold keeps an accepted connection open, reading what comes.
func hold(_ int, c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(io.Discard, c)
}

const isn = 1000

// established opens a connection with 10 bytes of data from a peer on
// port to a kernel that holds it, with a checkpoint, and returns the peer
// and the kernel's rcv_nxt.
func established(l *netlab.Lab, port uint16) (*peer, uint32, error) {
	p, err := newPeer(l, port, hold)
	if err != nil {
		return nil, 0, err
	}
	err = steps(
		func() error { _, err := p.handshake(isn, true); return err },
		func() error { return p.rec.checkpoint("handshake and 10 B", p.kern) },
	)
	if err != nil {
		p.close()
		return nil, 0, err
	}
	return p, isn + 11, nil
}

// rstInWindow: RFC 5961 §3.
func rstInWindow(l *netlab.Lab) (*recording, error) {
	p, rcvNxt, err := established(l, 40001)
	if err != nil {
		return nil, err
	}
	defer p.close()
	err = steps(
		func() error { return p.send(fRST, rcvNxt+1<<30, 0, nil) },
		func() error { return p.rec.checkpoint("RST outside the window: dropped", p.kern) },
		func() error { return p.send(fRST, rcvNxt+1000, 0, nil) },
		func() error { _, err := p.rec.expect("challenge ACK", ackOf(rcvNxt)); return err },
		func() error { return p.rec.checkpoint("in-window RST: challenge ACK", p.kern) },
		func() error { return p.send(fRST, rcvNxt, 0, nil) },
		func() error { return p.rec.checkpoint("RST at rcv_nxt", p.kern) },
	)
	return p.rec, err
}

// ackOf matches a pure ACK from the kernel acknowledging ack.
func ackOf(ack uint32) func(*segment) bool {
	return func(s *segment) bool { return s.tcp.ACK && !s.tcp.SYN && !s.tcp.RST && !s.tcp.FIN && s.ack == ack }
}

// synEstablished: RFC 5961 §4.
func synEstablished(l *netlab.Lab) (*recording, error) {
	p, rcvNxt, err := established(l, 40002)
	if err != nil {
		return nil, err
	}
	defer p.close()
	return p.rec, p.challengedSYN(rcvNxt+100, rcvNxt, "in-window SYN")
}

// challengedSYN sends a SYN with isn that the kernel answers with a
// challenge ACK of rcvNxt, answers that with an RST at its ack, as a
// client in SYN_SENT does, and retransmits the SYN (reopen).
func (p *peer) challengedSYN(isn, rcvNxt uint32, what string) error {
	return steps(
		func() error { return p.send(fSYN, isn, 0, nil) },
		func() error { _, err := p.rec.expect("challenge ACK", ackOf(rcvNxt)); return err },
		func() error { return p.rec.checkpoint(what+": challenge ACK", p.kern) },
		func() error { return p.send(fRST, rcvNxt, 0, nil) },
		func() error { return p.rec.checkpoint("the peer's RST at the challenge's ack", p.kern) },
		func() error { return p.reopen(isn) },
	)
}

// reopen retransmits the SYN with isn, completes the handshake, and
// resets the connection, with checkpoints.
func (p *peer) reopen(isn uint32) error {
	var knxt uint32
	return steps(
		func() error { return p.send(fSYN, isn, 0, nil) },
		func() error {
			sa, err := p.rec.expect("SYN-ACK", func(s *segment) bool { return s.tcp.SYN && s.tcp.ACK && s.ack == isn+1 })
			knxt = sa.seq + 1
			return err
		},
		func() error { return p.rec.checkpoint("SYN retransmission: SYN-ACK", p.kern) },
		func() error { return p.send(fACK, isn+1, knxt, nil) },
		func() error { return p.rec.checkpoint("handshake ACK", p.kern) },
		func() error { return p.send(fRST|fACK, isn+1, knxt, nil) },
		func() error { return p.rec.checkpoint("teardown RST", p.kern) },
	)
}

// closeFirst closes the first accepted connection at once (a server-first
// close) and holds the others.
func closeFirst(n int, c net.Conn) {
	if n == 1 {
		c.Close()
		return
	}
	hold(n, c)
}

// synTimeWait: a SYN to a kernel server in TIME_WAIT, below rcv_nxt (a
// challenge ACK) or, with accept, beyond it.
func synTimeWait(l *netlab.Lab, accept bool) (*recording, error) {
	port := uint16(40003)
	if accept {
		port = 40004
	}
	p, err := newPeer(l, port, closeFirst)
	if err != nil {
		return nil, err
	}
	defer p.close()
	var knxt uint32
	rcvNxt := uint32(isn + 2)
	err = steps(
		func() (err error) { knxt, err = p.handshake(isn, false); return err },
		func() error {
			_, err := p.rec.expect("the kernel's FIN", func(s *segment) bool { return s.tcp.FIN && s.seq == knxt })
			return err
		},
		func() error { return p.send(fACK, isn+1, knxt+1, nil) },
		func() error { return p.rec.checkpoint("server FIN acknowledged", p.kern) },
		func() error { return p.send(fFIN|fACK, isn+1, knxt+1, nil) },
		func() error { _, err := p.rec.expect("final ACK", ackOf(rcvNxt)); return err },
		func() error { return p.rec.checkpoint("peer FIN acknowledged", p.kern) },
	)
	if err != nil {
		return p.rec, err
	}
	if accept {
		return p.rec, p.reopen(rcvNxt + 100000)
	}
	return p.rec, p.challengedSYN(500, rcvNxt, "SYN below rcv_nxt")
}

// staleSYN: the client's first SYN arrives again after a client-first
// close (a retransmission overtaken beyond the client); the kernel server,
// with no socket left, takes it for a new connection. The peer then plays
// the client's TIME_WAIT, which answers the SYN-ACK with an ACK of the old
// connection, and the client without a socket, which answers the SYN-ACK
// with an RST at its ack.
func staleSYN(l *netlab.Lab) (*recording, error) {
	p, err := newPeer(l, 40005, hold)
	if err != nil {
		return nil, err
	}
	defer p.close()
	var knxt uint32
	return p.rec, steps(
		func() (err error) { knxt, err = p.handshake(isn, false); return err },
		func() error { return p.send(fFIN|fACK, isn+1, knxt, nil) },
		func() error {
			_, err := p.rec.expect("the kernel's FIN", func(s *segment) bool { return s.tcp.FIN && s.seq == knxt })
			return err
		},
		func() error { return p.send(fACK, isn+2, knxt+1, nil) },
		func() error { return p.rec.checkpoint("the peer's final ACK", p.kern) },
		func() error { return p.send(fSYN, isn, 0, nil) },
		func() error {
			_, err := p.rec.expect("SYN-ACK", func(s *segment) bool { return s.tcp.SYN && s.tcp.ACK && s.ack == isn+1 })
			return err
		},
		func() error { return p.rec.checkpoint("the old SYN again: SYN-ACK", p.kern) },
		func() error { return p.send(fACK, isn+2, knxt+1, nil) },
		func() error {
			_, err := p.rec.expect("RST", func(s *segment) bool { return s.tcp.RST && s.seq == knxt+1 })
			return err
		},
		func() error { return p.rec.checkpoint("the old connection's ACK: RST", p.kern) },
		func() error { return p.send(fRST, isn+1, 0, nil) },
		func() error { return p.rec.checkpoint("the peer's RST at the SYN-ACK's ack", p.kern) },
	)
}

// The HTTP/1.0-style exchange of crossingFINs.
const (
	request  = "GET / HTTP/1.0\r\n\r\n"
	bodySize = 3000
	header   = "HTTP/1.0 200 OK\r\nContent-Length: 3000\r\n\r\n"
)

// crossingFINs: an HTTP/1.0-style server close racing the client's close.
func crossingFINs(l *netlab.Lab) (*recording, error) {
	tp, err := l.Topology()
	if err != nil {
		return nil, err
	}
	// 50 kbit/s toward the client: the response drains in about half a
	// second and the server's FIN, queued behind it, reaches the client
	// some 10 ms after the last byte, long after the client's close.
	if _, err := tp.Router.Run("tc", "qdisc", "add", "dev", tp.RouterClientIf, "root", "tbf", "rate", "50kbit", "burst", "1600", "limit", "30000"); err != nil {
		return nil, err
	}
	c, rec, ends, err := realPair(tp, func(c net.Conn) {
		buf := make([]byte, len(request))
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		_, _ = c.Write([]byte(header + strings.Repeat("x", bodySize)))
		time.Sleep(20 * time.Millisecond) // the FIN goes in a segment of its own
	})
	if err != nil {
		return rec, err
	}
	if _, err := c.Write([]byte(request)); err != nil {
		return rec, err
	}
	if _, err := io.ReadFull(c, make([]byte, len(header)+bodySize)); err != nil {
		return rec, err
	}
	c.Close()
	time.Sleep(time.Second)
	return rec, rec.checkpoint("both closed", ends...)
}

// realPair connects two real kernels through tp's router: a listener on
// the server's port 8080 serves its first connection with serve and then
// closes it, the recording runs on the router's server-side interface,
// and the client dials. It returns the client's connection, the
// recording and the ends to checkpoint: the server's, then the client's.
// The listener is closed once that connection is accepted.
func realPair(tp *netlab.Topology, serve func(net.Conn)) (net.Conn, *recording, []end, error) {
	server := netip.AddrPortFrom(tp.Server4, 8080)
	ln, err := tp.Server.Listen("tcp4", server.String())
	if err != nil {
		return nil, nil, nil, err
	}
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	rec, err := record(tp.Router, tp.RouterServerIf)
	if err != nil {
		ln.Close()
		return nil, nil, nil, err
	}
	c, err := tp.Client.Dial("tcp4", server.String(), 3*time.Second)
	if err != nil {
		ln.Close()
		return nil, rec, nil, err
	}
	client, _ := netip.ParseAddrPort(c.LocalAddr().String())
	return c, rec, []end{{ns: tp.Server, local: server, remote: client}, {ns: tp.Client, local: client, remote: server}}, nil
}
