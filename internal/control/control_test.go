package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/ctlclient"
)

func TestListenModeStaleAndLive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "queue-1.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket %v mode %v, want a socket with mode 0600", err, fi.Mode())
	}
	if _, err := Listen(path); !errors.Is(err, ErrLive) {
		t.Errorf("second Listen on a live socket: %v, want ErrLive", err)
	}
	// A killed run leaves its socket file behind.
	ln.SetUnlinkOnClose(false)
	ln.Close()
	ln, err = Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil {
		t.Errorf("Listen over a regular file succeeded")
	}
}

// fake is a Backend with one rule "r" and one connection 7.
type fake struct{ on bool }

func (f *fake) Status() ctlclient.Status { return ctlclient.Status{PID: 42, Rules: 1} }
func (f *fake) Conns(c ctlclient.ConnFilter) ([]ctlclient.Conn, error) {
	if c.State == "BOGUS" {
		return nil, fmt.Errorf("state %q: %w", c.State, ErrBadRequest)
	}
	id := uint64(7)
	if c.Limit > 0 {
		id = uint64(c.Limit) // echoed, for the test of the limit's way through
	}
	return []ctlclient.Conn{{ID: id, Server: fmt.Sprintf("198.18.1.1:%d", c.Port)}}, nil
}
func (f *fake) Rules() []ctlclient.Rule { return []ctlclient.Rule{{Name: "r", Enabled: f.on}} }
func (f *fake) SetRuleEnabled(name string, on bool) (ctlclient.Rule, error) {
	if name != "r" {
		return ctlclient.Rule{}, fmt.Errorf("no rule %q: %w", name, ErrNotFound)
	}
	f.on = on
	return f.Rules()[0], nil
}
func (f *fake) Reload(file string) (ctlclient.Reload, error) {
	if file == "/bad.yaml" {
		return ctlclient.Reload{}, errors.New("rules[0].action: unknown action")
	}
	return ctlclient.Reload{Config: file, Changed: []string{"rules"}}, nil
}
func (f *fake) Timeline(conn string) (ctlclient.Timeline, error) {
	return ctlclient.Timeline{Ladder: "ladder of " + conn}, nil
}

// serveFake serves a fake on a socket of its own until the test ends, and
// returns the socket's path.
func serveFake(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(ln, &fake{on: true}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { srv.Close() })
	return path
}

func TestServeThroughTheClient(t *testing.T) {
	path := serveFake(t)
	c := ctlclient.New(path)
	defer c.Close()
	ctx := context.Background()
	if s, err := c.Status(ctx); err != nil || s.PID != 42 {
		t.Errorf("Status = %+v, %v", s, err)
	}
	if cs, err := c.Conns(ctx, ctlclient.ConnFilter{Port: 8080}); err != nil || len(cs) != 1 || cs[0].Server != "198.18.1.1:8080" {
		t.Errorf("Conns = %+v, %v", cs, err)
	}
	var e *ctlclient.Error
	if _, err := c.Conns(ctx, ctlclient.ConnFilter{State: "BOGUS"}); !errors.As(err, &e) || e.Status != http.StatusBadRequest {
		t.Errorf("Conns(bogus state) error %v, want a 400", err)
	}
	if cs, err := c.Conns(ctx, ctlclient.ConnFilter{Limit: 5}); err != nil || len(cs) != 1 || cs[0].ID != 5 {
		t.Errorf("Conns(limit 5) = %+v, %v; want the fake's echo of the limit", cs, err)
	}
	if r, err := c.SetRuleEnabled(ctx, "r", false); err != nil || r.Enabled {
		t.Errorf("disable r = %+v, %v", r, err)
	}
	if _, err := c.SetRuleEnabled(ctx, "x", false); !errors.As(err, &e) || e.Status != http.StatusNotFound {
		t.Errorf("disable x error %v, want a 404", err)
	}
	if r, err := c.SetConfig(ctx, "/new.yaml"); err != nil || r.Config != "/new.yaml" {
		t.Errorf("SetConfig = %+v, %v", r, err)
	}
	if _, err := c.SetConfig(ctx, "/bad.yaml"); !errors.As(err, &e) || e.Status != http.StatusConflict || e.Message != "rules[0].action: unknown action" {
		t.Errorf("SetConfig(bad) error %v, want a 409 with the reason", err)
	}
	if _, err := c.SetConfig(ctx, "relative.yaml"); !errors.As(err, &e) || e.Status != http.StatusBadRequest {
		t.Errorf("SetConfig(relative) error %v, want a 400", err)
	}
	if tl, err := c.Timeline(ctx, "198.18.0.1:40000"); err != nil || tl.Ladder != "ladder of 198.18.0.1:40000" {
		t.Errorf("Timeline = %+v, %v", tl, err)
	}
	// Any language: plain HTTP over the socket.
	hc := http.Client{Transport: &http.Transport{Dial: func(string, string) (net.Conn, error) { return net.Dial("unix", path) }}}
	for _, tc := range []struct {
		path string
		code int
	}{{"/v1/nothing", http.StatusNotFound}, {"/v1/conns?limit=-1", http.StatusBadRequest}, {"/v1/conns?limit=x", http.StatusBadRequest}} {
		resp, err := hc.Get("http://x" + tc.path)
		if err != nil || resp.StatusCode != tc.code {
			t.Errorf("GET %s: %v %v, want %d", tc.path, resp, err, tc.code)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
}

// TestIdleAndSilentClientsAreCut: a client that keeps its connection open
// after an answer, or that sends a body too large, does not hold a
// connection (a goroutine and a descriptor) for ever.
func TestIdleAndSilentClientsAreCut(t *testing.T) {
	defer func(d time.Duration) { idleTimeout = d }(idleTimeout)
	idleTimeout = 200 * time.Millisecond
	path := serveFake(t)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/status: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("an idle connection after an answer: read %v, want EOF (closed by the server)", err)
	}

	hc := http.Client{Transport: &http.Transport{Dial: func(string, string) (net.Conn, error) { return net.Dial("unix", path) }}}
	body := `{"file": "/` + strings.Repeat("x", 1<<20) + `"}`
	resp, err = hc.Post("http://x/v1/config", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST /v1/config of 1 MiB: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST /v1/config of 1 MiB: status %d, want 400", resp.StatusCode)
	}
}
