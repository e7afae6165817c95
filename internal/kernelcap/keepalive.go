package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// probing is the client's keepalive in the keepalive captures.
var probing = net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 3}

// keepaliveProbes: two real kernels, a client with SO_KEEPALIVE (idle,
// interval 1 s, 3 probes) and an echo server, one request and its answer,
// then the client's probes, captured on the router's server-side
// interface. Answered, two probes and their answers, then the client's
// close. With lost, the router drops everything from the server after the
// exchange (behind the capture point, which still sees the answers): the
// client sends its three probes and gives up with an RST, which closes the
// server.
func keepaliveProbes(l *netlab.Lab, lost bool) (*recording, error) {
	tp, err := l.Topology()
	if err != nil {
		return nil, err
	}
	c, rec, ends, err := realPair(tp, func(c net.Conn) { _, _ = io.Copy(c, c) })
	if err != nil {
		return rec, err
	}
	defer c.Close()
	if err := c.(*net.TCPConn).SetKeepAliveConfig(probing); err != nil {
		return rec, err
	}
	r := bufio.NewReader(c)
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return rec, err
	}
	if _, err := r.ReadString('\n'); err != nil {
		return rec, err
	}
	if err := rec.checkpoint("request answered", ends...); err != nil {
		return rec, err
	}
	rec.drain() // the server's ACK of the request is no answer to a probe
	if lost {
		if _, err := tp.Router.Run("iptables", "-A", "FORWARD", "-i", tp.RouterServerIf, "-p", "tcp", "-j", "DROP"); err != nil {
			return rec, err
		}
	}
	answers := 2
	if lost {
		answers = probing.Count
	}
	for i := 1; i <= answers; i++ {
		if _, err := rec.expect(fmt.Sprint("answer to probe ", i), func(s *segment) bool {
			return s.tcp.ACK && !s.tcp.SYN && !s.tcp.FIN && !s.tcp.RST && s.payload == 0
		}); err != nil {
			return rec, err
		}
		if err := rec.checkpoint(fmt.Sprint("probe ", i, " answered"), ends...); err != nil {
			return rec, err
		}
	}
	if !lost {
		c.Close()
		return rec, rec.checkpoint("client closed", ends...)
	}
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return rec, err
	}
	if _, err := r.ReadString('\n'); !errors.Is(err, syscall.ETIMEDOUT) {
		return rec, fmt.Errorf("client read after the lost answers: %v, want ETIMEDOUT", err)
	}
	c.Close()
	return rec, rec.checkpoint("client gave up", ends...)
}
