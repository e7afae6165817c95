package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"
)

// The workloads run as this same program re-executed inside a namespace
// ("ip netns exec NS bench -role ROLE ..."): the server in the server
// namespace, the clients in the client namespace, each a process of its
// own like iperf3 would be. A client prints one JSON result on stdout.
//
// One port serves every workload. The first byte a client sends says what
// it wants:
//
//	'E'  echo: the server answers one byte, then waits for the client's close
//	'B'  bulk: the server streams until the client shuts its side down
//	'L'  long: the server echoes every byte until the client closes, each
//	     within ioTimeout of the one before (beyond the connection life)
const (
	echoRequest = 'E'
	bulkRequest = 'B'
	longRequest = 'L'
)

// bulkChunk is the size of the bulk sender's writes.
const bulkChunk = 4 << 20

// ioTimeout bounds every single network operation of a workload, so that a
// broken path cannot hang the suite.
const ioTimeout = 10 * time.Second

// serve accepts on addr until SIGINT or SIGTERM, then closes the
// connections still open; it prints "ready" once it listens. A connection
// lives at most connLife. (A SYN flood leaves connections open whose
// client has long closed: SYN cookies when the accept queue overflows.)
func serve(addr string, connLife time.Duration) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Println("ready")
	var mu sync.Mutex
	open := make(map[net.Conn]struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range open {
			c.Close()
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("serve: accept: %w", err)
		}
		mu.Lock()
		open[conn] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(open, conn)
				mu.Unlock()
				conn.Close()
			}()
			_ = conn.SetDeadline(time.Now().Add(connLife))
			handle(conn)
		})
	}
}

// handle serves one connection as the first byte asks. Errors end the
// connection: the client side counts them.
func handle(conn net.Conn) {
	var b [1]byte
	if n, _ := conn.Read(b[:]); n == 0 {
		return
	}
	switch b[0] {
	case echoRequest:
		if _, err := conn.Write(b[:]); err == nil {
			_, _ = io.Copy(io.Discard, conn)
		}
	case longRequest:
		for n := 1; n == 1; n, _ = conn.Read(b[:]) {
			if conn.SetDeadline(time.Now().Add(ioTimeout)) != nil {
				return
			}
			if _, err := conn.Write(b[:]); err != nil {
				return
			}
		}
	case bulkRequest:
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, conn)
			close(done)
		}()
		chunk := make([]byte, bulkChunk)
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := conn.Write(chunk); err != nil {
				return
			}
		}
	}
}

// bulkResult is what the bulk client measured.
type bulkResult struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

// bulk asks the server at addr for a stream and counts the bytes received
// during d from the first byte on; then it shuts down its side and drains
// the stream, so that neither end closes with unread data (no RST).
func bulk(addr string, d time.Duration) (bulkResult, error) {
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return bulkResult{}, fmt.Errorf("bulk: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(d + ioTimeout)); err != nil {
		return bulkResult{}, fmt.Errorf("bulk: %w", err)
	}
	if _, err := conn.Write([]byte{bulkRequest}); err != nil {
		return bulkResult{}, fmt.Errorf("bulk: request: %w", err)
	}
	buf := make([]byte, 1<<20)
	if _, err := conn.Read(buf); err != nil {
		return bulkResult{}, fmt.Errorf("bulk: first read: %w", err)
	}
	start := time.Now()
	var total int64
	for time.Since(start) < d {
		n, err := conn.Read(buf)
		total += int64(n)
		if err != nil {
			return bulkResult{}, fmt.Errorf("bulk: read after %d bytes: %w", total, err)
		}
	}
	r := bulkResult{Bytes: total, Seconds: time.Since(start).Seconds()}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return r, fmt.Errorf("bulk: shutdown: %w", err)
	}
	if err := conn.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return r, fmt.Errorf("bulk: %w", err)
	}
	if _, err := io.CopyBuffer(io.Discard, conn, buf); err != nil {
		return r, fmt.Errorf("bulk: drain: %w", err)
	}
	return r, nil
}

// connsResult is what the short-connection load measured.
type connsResult struct {
	OK      int64   `json:"ok"`
	Resets  int64   `json:"resets"`   // ECONNRESET, at any step
	Timeout int64   `json:"timeouts"` // a step ran out of ioTimeout
	Other   int64   `json:"other"`
	Seconds float64 `json:"seconds"`
	// Errors holds up to maxErrors distinct error texts.
	Errors []string `json:"errors,omitempty"`
}

const maxErrors = 5

// add counts err (nil: a success).
func (r *connsResult) add(err error) {
	var ne net.Error
	switch {
	case err == nil:
		r.OK++
		return
	case errors.Is(err, syscall.ECONNRESET):
		r.Resets++
	case errors.As(err, &ne) && ne.Timeout():
		r.Timeout++
	default:
		r.Other++
	}
	if s := err.Error(); len(r.Errors) < maxErrors && !slices.Contains(r.Errors, s) {
		r.Errors = append(r.Errors, s)
	}
}

// merge adds o's counts and errors to r.
func (r *connsResult) merge(o connsResult) {
	r.OK += o.OK
	r.Resets += o.Resets
	r.Timeout += o.Timeout
	r.Other += o.Other
	for _, e := range o.Errors {
		if len(r.Errors) < maxErrors && !slices.Contains(r.Errors, e) {
			r.Errors = append(r.Errors, e)
		}
	}
}

// attempts counts the connections tried.
func (r connsResult) attempts() int64 { return r.OK + r.Resets + r.Timeout + r.Other }

// conns runs workers loops for d, each: connect, send one byte, read the
// echoed byte, close. A loop starts no new connection after d. With
// sources, worker w's i-th connection comes from sources[(w + i·workers)
// mod len(sources)], so that every source is used; without, the kernel
// picks the source.
func conns(addr string, workers int, d time.Duration, sources []net.IP) connsResult {
	start := time.Now()
	end := start.Add(d)
	results := make([]connsResult, workers)
	var wg sync.WaitGroup
	for w := range results {
		wg.Go(func() {
			dialer := net.Dialer{Timeout: ioTimeout}
			for i := 0; time.Now().Before(end); i++ {
				if len(sources) > 0 {
					dialer.LocalAddr = &net.TCPAddr{IP: sources[(w+i*workers)%len(sources)]}
				}
				results[w].add(echoFrom(dialer, addr))
			}
		})
	}
	wg.Wait()
	var total connsResult
	for _, r := range results {
		total.merge(r)
	}
	total.Seconds = time.Since(start).Seconds()
	return total
}

// echo is one short connection: connect, one byte each way, close (the
// client closes first and keeps the TIME_WAIT).
func echo(addr string) error { return echoFrom(net.Dialer{Timeout: ioTimeout}, addr) }

// echoFrom is echo through d (bound to a source address, say).
func echoFrom(d net.Dialer, addr string) error {
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	return echoOn(conn)
}

// echoOn sends one byte on conn and reads the byte echoed.
func echoOn(conn net.Conn) error {
	if err := conn.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	b := []byte{echoRequest}
	if _, err := conn.Write(b); err != nil {
		return err
	}
	_, err := io.ReadFull(conn, b)
	return err
}

// latencyResult is what the connect-time probe measured.
type latencyResult struct {
	// Micros are the connect times of the successful connects, in µs.
	Micros []float64 `json:"micros"`
	// TTFB are the times to the first response byte of the connections
	// whose echo came back, in µs.
	TTFB   []float64 `json:"ttfb"`
	Failed int64     `json:"failed"`
	// Errors holds up to maxErrors distinct error texts.
	Errors []string `json:"errors,omitempty"`
}

// fail counts a failed connection.
func (r *latencyResult) fail(err error) {
	r.Failed++
	if s := err.Error(); len(r.Errors) < maxErrors && !slices.Contains(r.Errors, s) {
		r.Errors = append(r.Errors, s)
	}
}

// latency makes n connections one after the other and times each: the
// connect() call (socket, SYN out, SYN-ACK in), and the first response
// byte (connect, one byte each way), which is what compares with a proxy,
// whose connect() returns at the proxy. The client closes each at once.
func latency(addr string, n int) latencyResult {
	var r latencyResult
	for range n {
		start := time.Now()
		conn, err := net.DialTimeout("tcp", addr, ioTimeout)
		took := time.Since(start)
		if err != nil {
			r.fail(err)
			continue
		}
		r.Micros = append(r.Micros, float64(took.Nanoseconds())/1e3)
		if err := echoOn(conn); err != nil {
			r.fail(err)
		} else {
			r.TTFB = append(r.TTFB, float64(time.Since(start).Nanoseconds())/1e3)
		}
		conn.Close()
	}
	return r
}

// printJSON writes v as one JSON line to stdout.
func printJSON(v any) error {
	if err := json.NewEncoder(os.Stdout).Encode(v); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}
