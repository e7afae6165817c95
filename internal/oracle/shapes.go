package oracle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Shape is how one connection of the conntrack workload opens and closes.
// Each shape has a server port of its own (BasePort + the shape), so that
// the rules of Config fire on a known subset: every connection of the
// lossy shapes, once.
type Shape int

// The shapes. In each, the client sends one request byte and the server
// answers one byte before the close begins.
const (
	ClientClose  Shape = iota // the client closes first, the server after EOF
	ServerClose               // the server closes first, the client after EOF
	Simultaneous              // both close at once, neither waits for the other (HTTP/1.0)
	Abort                     // the client aborts with an RST (SO_LINGER 0)
	HalfClose                 // the client shuts its side, the server sends HalfCloseBytes, then closes
	LostSyn                   // ClientClose; the client's first SYN is dropped
	LostSynAck                // ClientClose; the first SYN-ACK is dropped
	LostFin                   // ClientClose; the first FIN (the client's) is dropped
	LostFinalAck              // ClientClose; the final ACK (the client's) is dropped
	NumShapes
)

var shapeNames = [NumShapes]string{
	"client-close", "server-close", "simultaneous", "abort", "half-close",
	"lost-syn", "lost-syn-ack", "lost-fin", "lost-final-ack",
}

// String returns the shape's name, e.g. "lost-syn".
func (s Shape) String() string { return shapeNames[s] }

// weights say how many connections of each shape a round of 100 has.
var weights = [NumShapes]int{22, 18, 20, 10, 10, 3, 3, 7, 7}

// ShapeOf returns the shape of the workload's i-th connection: the shapes
// interleaved in the proportions of weights.
func ShapeOf(i int) Shape {
	i %= 100
	for s, w := range weights {
		if i < w {
			return Shape(s)
		}
		i -= w
	}
	return ClientClose
}

// BasePort is the server port of ClientClose; shape s listens on
// BasePort+s.
const BasePort = 8080

// Port returns the shape's server port.
func (s Shape) Port() uint16 { return BasePort + uint16(s) }

// HalfCloseBytes is what the server sends after the client's FIN in
// HalfClose.
const HalfCloseBytes = 64 << 10

// Config returns the tcpchaos config of the workload: every shape's port
// intercepted, the lossy shapes' packets dropped once per connection, and
// TIME_WAIT lasting 2×msl. No rule acts on the data phase, a
// handshake-ack or a fin-ack: the quiet handshake and the quiet close are
// in force (see QuietClose).
func Config(msl time.Duration) string {
	var b strings.Builder
	b.WriteString("# The conntrack oracle's workload (internal/oracle): one port per shape.\nintercept:\n  ports: [")
	for s := range NumShapes {
		if s > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, s.Port())
	}
	fmt.Fprintf(&b, "]\ntracker:\n  msl: %s\nrules:\n", msl)
	for _, r := range []struct {
		s          Shape
		kind, from string
	}{{LostSyn, "syn", "client"}, {LostSynAck, "syn-ack", "server"}, {LostFin, "fin", "client"}, {LostFinalAck, "final-ack", "client"}} {
		fmt.Fprintf(&b, "  - name: %s\n    match: {packet: %s, from: %s, nth: 1, port: %d}\n    action: drop\n", r.s, r.kind, r.from, r.s.Port())
	}
	return b.String()
}

// Listen is how Serve opens a listener (in the server's namespace).
type Listen func(network, address string) (net.Listener, error)

// Serve listens on every shape's port at addr and serves each connection
// as its shape says, each on a goroutine of its own and for at most
// timeout. stop closes the listeners and waits for the handlers.
func Serve(listen Listen, addr netip.Addr, timeout time.Duration) (stop func(), err error) {
	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	for s := range NumShapes {
		ln, err := listen("tcp", netip.AddrPortFrom(addr, s.Port()).String())
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("serve %s: %w", s, err)
		}
		lns = append(lns, ln)
	}
	var wg sync.WaitGroup
	for s, ln := range lns {
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(timeout))
					_ = serveShape(Shape(s), c)
				})
			}
		})
	}
	return func() {
		closeAll()
		wg.Wait()
	}, nil
}

// serveShape is the server's side of one connection; the client counts
// what went wrong.
func serveShape(s Shape, c net.Conn) error {
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if _, err := c.Write(b[:]); err != nil {
		return err
	}
	switch s {
	case ServerClose, Simultaneous:
		return nil // the deferred close
	case HalfClose:
		if _, err := io.Copy(io.Discard, c); err != nil {
			return err
		}
		_, err := c.Write(make([]byte, HalfCloseBytes))
		return err
	default: // wait for the client's close (FIN, or RST for Abort)
		_, err := io.Copy(io.Discard, c)
		return err
	}
}

// Dial is how Run connects (from the client's namespace).
type Dial func(ctx context.Context, network, address string) (net.Conn, error)

// Result counts the workload's connections by shape.
type Result struct {
	OK, Failed [NumShapes]int
	// Errors holds up to maxErrors distinct error texts.
	Errors []string
}

const maxErrors = 5

// Total returns the connections that completed and those that failed.
func (r *Result) Total() (ok, failed int) {
	for s := range NumShapes {
		ok += r.OK[s]
		failed += r.Failed[s]
	}
	return ok, failed
}

// Run makes n connections to the server at addr, connection i of shape
// ShapeOf(i), workers at a time; each lives at most timeout. It stops
// starting connections when ctx ends.
func Run(ctx context.Context, dial Dial, addr netip.Addr, n, workers int, timeout time.Duration) Result {
	var (
		mu   sync.Mutex
		r    Result
		next int
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				s := ShapeOf(i)
				err := runShape(ctx, dial, s, netip.AddrPortFrom(addr, s.Port()), timeout)
				mu.Lock()
				if err == nil {
					r.OK[s]++
				} else {
					r.Failed[s]++
					if msg := fmt.Sprintf("%s: %v", s, err); len(r.Errors) < maxErrors {
						r.Errors = append(r.Errors, msg)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return r
}

// runShape is the client's side of one connection.
func runShape(ctx context.Context, dial Dial, s Shape, ap netip.AddrPort, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dial(ctx, "tcp", ap.String())
	if err != nil {
		return err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return errors.New("not a TCP connection")
	}
	defer tc.Close()
	if err := tc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	b := []byte{byte(s)}
	if _, err := tc.Write(b); err != nil {
		return err
	}
	if s == HalfClose {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, tc)
		if err == nil && n != 1+HalfCloseBytes {
			err = fmt.Errorf("received %d bytes after the half-close, want %d", n, 1+HalfCloseBytes)
		}
		return err
	}
	if _, err := io.ReadFull(tc, b); err != nil {
		return err
	}
	switch s {
	case ServerClose:
		if n, err := io.Copy(io.Discard, tc); err != nil || n != 0 {
			return fmt.Errorf("wait for the server's close: %d bytes, %v", n, err)
		}
	case Abort:
		return tc.SetLinger(0)
	}
	return nil // the deferred close
}
