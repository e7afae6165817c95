package ctlclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
)

// Client talks to one instance's control socket. Its methods are safe for
// concurrent use. A request the instance refuses returns an *Error. A
// request lasts as long as its context lets it, connecting included: give
// the context a deadline, or an instance that accepts on its socket but
// never answers holds the request forever (`tcpchaos ctl` bounds each by
// its --timeout).
type Client struct {
	path string
	http *http.Client
}

// New returns a client of the control socket at path. It does not connect
// until the first request.
func New(path string) *Client {
	var d net.Dialer
	return &Client{path: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// ConnFilter selects connections; the zero value selects all.
type ConnFilter struct {
	// State selects connections with an endpoint in this state
	// ("ESTABLISHED", "TIME_WAIT", ...).
	State string
	// Port selects connections to this server port.
	Port uint16
	// Limit is the most connections listed, the most recently active
	// first (0: every selected connection).
	Limit int
}

// Status returns the instance's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// Conns lists the tracked connections that f selects, the most recently
// active first.
func (c *Client) Conns(ctx context.Context, f ConnFilter) ([]Conn, error) {
	q := url.Values{}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if f.Port != 0 {
		q.Set("port", strconv.Itoa(int(f.Port)))
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	path := "/v1/conns"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var cs []Conn
	return cs, c.do(ctx, http.MethodGet, path, nil, &cs)
}

// Rules lists the rules in force, in order.
func (c *Client) Rules(ctx context.Context) ([]Rule, error) {
	var rs []Rule
	return rs, c.do(ctx, http.MethodGet, "/v1/rules", nil, &rs)
}

// SetRuleEnabled enables or disables the rule named name, from the next
// packet on, and returns it.
func (c *Client) SetRuleEnabled(ctx context.Context, name string, on bool) (Rule, error) {
	verb := "disable"
	if on {
		verb = "enable"
	}
	var r Rule
	return r, c.do(ctx, http.MethodPost, "/v1/rules/"+url.PathEscape(name)+"/"+verb, nil, &r)
}

// Reload makes the instance read its config file again.
func (c *Client) Reload(ctx context.Context) (Reload, error) {
	var r Reload
	return r, c.do(ctx, http.MethodPost, "/v1/reload", nil, &r)
}

// SetConfig replaces the instance's config by the file at path (as the
// instance sees it: make it absolute), from now on also for reloads.
func (c *Client) SetConfig(ctx context.Context, path string) (Reload, error) {
	var r Reload
	return r, c.do(ctx, http.MethodPost, "/v1/config", SetConfig{File: path}, &r)
}

// Timeline returns the recent history of the connection conn: a conn id,
// or the client's ADDR:PORT.
func (c *Client) Timeline(ctx context.Context, conn string) (Timeline, error) {
	var t Timeline
	return t, c.do(ctx, http.MethodGet, "/v1/timeline/"+url.PathEscape(conn), nil, &t)
}

// do sends one request with body (nil: none) encoded as JSON and decodes
// the answer into out.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://tcpchaos"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("control socket %s: read answer: %w", c.path, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		return e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("control socket %s: decode answer to %s %s: %w", c.path, method, path, err)
	}
	return nil
}
