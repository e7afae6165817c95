package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// The toxiproxy column: Toxiproxy, what users pick for faults on a stream,
// as a proxy on the router (no toxics) that the client connects to and
// that connects to the server, so that it is measured in the same
// topology and run as tcpchaos.

// toxiproxyModule and toxiproxyVersion are the Toxiproxy server the suite
// builds (pinned).
const (
	toxiproxyModule  = "github.com/Shopify/toxiproxy/v2/cmd/server"
	toxiproxyVersion = "v2.12.0"
)

// toxiproxyAPI is where Toxiproxy's HTTP API listens, inside the router
// namespace.
const toxiproxyAPI = "127.0.0.1:8474"

// toxiproxyPath is where the suite keeps its Toxiproxy build: the version
// in the name, so that a build is reused until the pin moves.
func toxiproxyPath(root string) string {
	return filepath.Join(root, "bin", "toxiproxy-server-"+toxiproxyVersion)
}

// buildToxiproxy installs the pinned Toxiproxy server at path unless it is
// there already.
func buildToxiproxy(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	gobin, err := os.MkdirTemp(filepath.Dir(path), ".toxiproxy-build-")
	if err != nil {
		return fmt.Errorf("build toxiproxy: %w", err)
	}
	defer os.RemoveAll(gobin)
	cmd := exec.CommandContext(ctx, "go", "install", toxiproxyModule+"@"+toxiproxyVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go install %s@%s (use -toxiproxy=false to skip the column): %w\n%s", toxiproxyModule, toxiproxyVersion, err, out)
	}
	if err := os.Rename(filepath.Join(gobin, "server"), path); err != nil {
		return fmt.Errorf("install toxiproxy: %w", err)
	}
	return nil
}

// startToxiproxy runs Toxiproxy's server in ns, logging warnings only (its
// default logs a line per connection), and makes a proxy from listen to
// upstream through its API.
func startToxiproxy(ctx context.Context, bin string, ns *netlab.NS, listen, upstream string) (*process, error) {
	host, port, _ := net.SplitHostPort(toxiproxyAPI)
	p, err := start(ctx, "toxiproxy", ns.Argv("env", "LOG_LEVEL=warn", bin, "-host", host, "-port", port), "", nil)
	if err != nil {
		return nil, err
	}
	if err := createProxy(ctx, ns, listen, upstream); err != nil {
		return nil, errors.Join(fmt.Errorf("toxiproxy: %w\n%s", err, p.output()), p.stop())
	}
	return p, nil
}

// createProxy asks the Toxiproxy API in ns for a proxy from listen to
// upstream, trying again until the API answers (at most readyTimeout).
func createProxy(ctx context.Context, ns *netlab.NS, listen, upstream string) error {
	client := &http.Client{
		Timeout: ioTimeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return ns.DialContext(ctx, network, addr)
		}},
	}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(map[string]any{"name": "bench", "listen": listen, "upstream": upstream, "enabled": true})
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := client.Post("http://"+toxiproxyAPI+"/proxies", "application/json", bytes.NewReader(body))
		if err == nil {
			var msg bytes.Buffer
			_, _ = msg.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return fmt.Errorf("create proxy: %s: %s", resp.Status, bytes.TrimSpace(msg.Bytes()))
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("API not answering after %s: %w", readyTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
