//go:build linux

package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where the metrics are served.
const Path = "/metrics"

// ErrAddr: the --metrics address is not HOST:PORT or :PORT.
var ErrAddr = errors.New("want HOST:PORT or :PORT (a bare port binds loopback, 127.0.0.1)")

// ListenAddr returns the address to listen on for addr: a bare port
// (":9464") binds loopback, 127.0.0.1; a host (an IP address or a name,
// "0.0.0.0" for every IPv4 address, "[::]" for every address) binds that
// host. Port 0 picks a free port.
func ListenAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q: %w", addr, ErrAddr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("%q: port %q is not a number from 0 to 65535: %w", addr, port, ErrAddr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// maxScrapes bounds the scrapes served at once: each one holds every
// queue's packets up in turn while it reads the queue's counters (a
// client sending scrapes in a loop must not keep the queues waiting); one
// more is answered 503 Service Unavailable.
const maxScrapes = 2

// idleTimeout is how long a client's connection may stay open, idle,
// after a scrape (a variable for the tests).
var idleTimeout = time.Minute

// Server serves a registry's metrics at Path over HTTP.
type Server struct {
	srv  *http.Server
	l    net.Listener
	done chan error
}

// Listen opens the listener for addr (see ListenAddr) in the caller's
// network namespace: the socket stays there whatever namespace the
// serving goroutines run in later. It serves nothing until Serve.
func Listen(addr string) (*Server, error) {
	a, err := ListenAddr(addr)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", a)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &Server{l: l}, nil
}

// URL returns the address the metrics are served at.
func (s *Server) URL() string { return "http://" + s.l.Addr().String() + Path }

// Serve starts serving c's metrics, with the Go runtime's and the
// process's, on a goroutine of its own until Close.
func (s *Server) Serve(c prometheus.Collector) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle(Path, promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: maxScrapes}))
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idleTimeout}
	s.done = make(chan error, 1)
	go func() { s.done <- s.srv.Serve(s.l) }()
}

// shutdownTimeout bounds how long Close waits for scrapes in progress.
const shutdownTimeout = 2 * time.Second

// Close stops serving (a scrape in progress gets shutdownTimeout to
// finish) and closes the listener.
func (s *Server) Close() error {
	if s.srv == nil {
		return s.l.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
