package oracle

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestShapeOfFollowsWeights(t *testing.T) {
	var n [NumShapes]int
	for i := range 1000 {
		n[ShapeOf(i)]++
	}
	total := 0
	for s, w := range weights {
		total += w
		if n[s] != 10*w {
			t.Errorf("%s: %d of 1000 connections, want %d", Shape(s), n[s], 10*w)
		}
	}
	if total != 100 {
		t.Errorf("weights add up to %d, want 100", total)
	}
}

func TestConfig(t *testing.T) {
	c := Config(time.Second)
	for _, want := range []string{
		"ports: [8080, 8081, 8082, 8083, 8084, 8085, 8086, 8087, 8088]",
		"msl: 1s",
		"match: {packet: syn, from: client, nth: 1, port: 8085}",
		"match: {packet: syn-ack, from: server, nth: 1, port: 8086}",
		"match: {packet: fin, from: client, nth: 1, port: 8087}",
		"match: {packet: final-ack, from: client, nth: 1, port: 8088}",
	} {
		if !strings.Contains(c, want) {
			t.Errorf("Config lacks %q:\n%s", want, c)
		}
	}
	if n := strings.Count(c, "action: drop"); n != 4 {
		t.Errorf("Config has %d drop rules, want 4:\n%s", n, c)
	}
}

// TestServeRun runs every shape over loopback, without faults: each
// connection completes (half-close: every byte comes back; abort: the
// server sees the RST as the end).
func TestServeRun(t *testing.T) {
	// An address of 127/8 of this test's own, so that ports 8080–8088 do
	// not meet another program's listeners.
	addr := netip.AddrFrom4([4]byte{127, 18, byte(os.Getpid() >> 8), byte(os.Getpid())})
	if _, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String()); err != nil {
		t.Skipf("no loopback address %s: %v", addr, err)
	}
	stop, err := Serve(net.Listen, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var d net.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := Run(ctx, d.DialContext, addr, 200, 8, 5*time.Second)
	ok, failed := r.Total()
	if ok != 200 || failed != 0 {
		t.Fatalf("%d completed, %d failed, want 200 and 0: %v", ok, failed, r.Errors)
	}
	for s := range NumShapes {
		if want := 2 * weights[s]; r.OK[s] != want {
			t.Errorf("%s: %d completed, want %d", s, r.OK[s], want)
		}
	}
	if _, err := Serve(net.Listen, addr, time.Second); err == nil || !strings.Contains(err.Error(), fmt.Sprint(ClientClose)) {
		t.Errorf("a second Serve on the same ports: %v, want an error naming the shape", err)
	}
}
