// Package control serves a running instance's control socket: the
// protocol that package ctlclient documents (HTTP/1.1 with JSON bodies
// over a unix socket), on behalf of a Backend that does the work.
package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/ctlclient"
)

// Errors a Backend returns (wrapped) to choose the answer's status; any
// other error of a reload is a refusal (409), of anything else 500.
var (
	// ErrNotFound: no such rule or connection (404).
	ErrNotFound = errors.New("not found")
	// ErrBadRequest: the request's parameters are invalid (400).
	ErrBadRequest = errors.New("bad request")
)

// ErrLive: Listen found the socket served by a running instance.
var ErrLive = errors.New("another tcpchaos run is serving it (one control socket per instance: give this one another --control PATH)")

// Backend does what the requests ask. Its methods are called from the
// server's goroutines, concurrently.
type Backend interface {
	Status() ctlclient.Status
	// Conns lists the tracked connections f selects (f.State is not
	// checked by the server).
	Conns(f ctlclient.ConnFilter) ([]ctlclient.Conn, error)
	Rules() []ctlclient.Rule
	SetRuleEnabled(name string, on bool) (ctlclient.Rule, error)
	// Reload loads file ("" for the config file in force) and applies it,
	// or refuses it and keeps the config in force.
	Reload(file string) (ctlclient.Reload, error)
	// Timeline returns the connection conn's history (a conn id or the
	// client's ADDR:PORT, as given).
	Timeline(conn string) (ctlclient.Timeline, error)
}

// Listen creates the control socket at path, mode 0600 (only its owner,
// the user running tcpchaos, and root may connect), creating its directory
// (mode 0755) if need be. A socket left at path by a killed run (nothing
// accepts on it) is replaced; one that a running instance serves is
// refused with ErrLive, and so is a path that is not a socket.
func Listen(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		switch {
		case err == nil:
			c.Close()
			return nil, fmt.Errorf("control socket %s: %w", path, ErrLive)
		case !errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("control socket %s: exists, and connecting to it to tell whether it is stale fails: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: remove the stale socket: %w", path, err)
		}
	}
	// No moment with a wider mode: the socket is created 0600.
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// idleTimeout is how long a client's connection may stay open, idle,
// after an answer (a variable for the tests).
var idleTimeout = time.Minute

// Server answers the requests of one listener.
type Server struct {
	http *http.Server
	done chan struct{}
}

// Serve answers ln's requests with b on a goroutine of its own, until
// Close. Errors of the listener are logged to log.
func Serve(ln net.Listener, b Backend, log *slog.Logger) *Server {
	mux := http.NewServeMux()
	h := handlers{b}
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) { reply(w, b.Status(), nil) })
	mux.HandleFunc("GET /v1/conns", h.conns)
	mux.HandleFunc("GET /v1/rules", func(w http.ResponseWriter, _ *http.Request) { reply(w, b.Rules(), nil) })
	mux.HandleFunc("POST /v1/rules/{name}/{verb}", h.setRule)
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, _ *http.Request) { reload(w, b, "") })
	mux.HandleFunc("POST /v1/config", h.setConfig)
	mux.HandleFunc("GET /v1/timeline/{conn}", func(w http.ResponseWriter, r *http.Request) {
		t, err := b.Timeline(r.PathValue("conn"))
		reply(w, t, err)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s (see the README's control protocol)", r.Method, r.URL.Path))
	})
	s := &Server{
		http: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idleTimeout, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("control socket stopped", "err", err)
		}
	}()
	return s
}

// Close stops answering, closes the listener (which removes the socket
// file) and the open connections, and waits for the serving goroutine.
func (s *Server) Close() error {
	err := s.http.Close()
	<-s.done
	return err
}

type handlers struct{ b Backend }

func (h handlers) conns(w http.ResponseWriter, r *http.Request) {
	f := ctlclient.ConnFilter{State: r.URL.Query().Get("state")}
	if p := r.URL.Query().Get("port"); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			fail(w, http.StatusBadRequest, fmt.Sprintf("port %q: want a port number 1-65535", p))
			return
		}
		f.Port = uint16(n)
	}
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.ParseUint(l, 10, 31)
		if err != nil {
			fail(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want a number of connections, 0 for all", l))
			return
		}
		f.Limit = int(n)
	}
	cs, err := h.b.Conns(f)
	reply(w, cs, err)
}

func (h handlers) setRule(w http.ResponseWriter, r *http.Request) {
	var on bool
	switch verb := r.PathValue("verb"); verb {
	case "enable":
		on = true
	case "disable":
	default:
		fail(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s: want .../enable or .../disable", r.Method, r.URL.Path))
		return
	}
	rule, err := h.b.SetRuleEnabled(r.PathValue("name"), on)
	reply(w, rule, err)
}

func (h handlers) setConfig(w http.ResponseWriter, r *http.Request) {
	var sc ctlclient.SetConfig
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sc); err != nil {
		fail(w, http.StatusBadRequest, fmt.Sprintf("body: want {\"file\": PATH}: %v", err))
		return
	}
	if !filepath.IsAbs(sc.File) {
		fail(w, http.StatusBadRequest, fmt.Sprintf("file %q: want an absolute path", sc.File))
		return
	}
	reload(w, h.b, sc.File)
}

// reload answers a reload: a refusal is a conflict with the config in
// force (409), unless the request itself was bad.
func reload(w http.ResponseWriter, b Backend, file string) {
	res, err := b.Reload(file)
	if err != nil && !errors.Is(err, ErrBadRequest) {
		fail(w, http.StatusConflict, err.Error())
		return
	}
	reply(w, res, err)
}

// reply writes v as JSON, or err's status and message.
func reply(w http.ResponseWriter, v any, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		fail(w, http.StatusNotFound, err.Error())
		return
	case errors.Is(err, ErrBadRequest):
		fail(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ctlclient.Error{Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away
}
