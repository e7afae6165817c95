package netlabtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// captureSnaplen keeps the headers of every packet: Ethernet, IPv6 and a
// TCP header with full options fit. Payload lengths come from the IP header.
const captureSnaplen = "256"

// captureTimeout bounds the wait for tcpdump to start capturing and to exit.
const captureTimeout = 10 * time.Second

// Packet is one captured TCP segment and its capture time.
type Packet struct {
	Time time.Time
	statetrack.Segment
}

// String renders the packet as one tcpdump-like line, e.g.
// "12:00:00.000001 198.18.1.2:40312 > 198.19.2.2:8080 S seq 1 ack 0 len 0".
func (p Packet) String() string {
	return fmt.Sprintf("%s %s > %s %s seq %d ack %d len %d",
		p.Time.Format("15:04:05.000000"), p.Src, p.Dst, p.Flags, uint32(p.Seq), uint32(p.Ack), p.Len)
}

// Capture is a tcpdump running in a namespace and writing a pcap file.
type Capture struct {
	t       testing.TB
	name    string // "namespace/interface", for messages
	file    string
	cmd     *exec.Cmd
	stderr  strings.Builder // written by the stderr reader until drained closes
	drained chan struct{}
	once    sync.Once
	packets []Packet
}

// Capture starts tcpdump on iface inside the namespace with a pcap filter
// expression ("" for everything) and returns once tcpdump is capturing
// (it has printed "listening on"). Packets are written as they arrive
// (-U, --immediate-mode). t.Cleanup stops it if the test does not.
func (n *NS) Capture(t testing.TB, iface, filter string) *Capture {
	t.Helper()
	c := &Capture{
		t:       t,
		name:    n.Name + "/" + iface,
		file:    filepath.Join(t.TempDir(), n.Name+"-"+iface+".pcap"),
		drained: make(chan struct{}),
	}
	args := []string{"-U", "--immediate-mode", "-n", "-Z", "root", "-s", captureSnaplen, "-i", iface, "-w", c.file}
	if filter != "" {
		args = append(args, filter)
	}
	c.cmd = n.Command("tcpdump", args...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatalf("capture %s: %v", c.name, err)
	}
	c.cmd.Stderr = pw
	err = c.cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		t.Fatalf("capture %s: start tcpdump: %v", c.name, err)
	}
	ready := make(chan struct{})
	go c.readStderr(pr, ready)
	t.Cleanup(func() { c.Stop() })

	select {
	case <-ready:
	case <-c.drained:
		err := c.cmd.Wait()
		c.once.Do(func() {})
		t.Fatalf("capture %s: tcpdump exited before capturing: %v: %s", c.name, err, c.stderr.String())
	case <-time.After(captureTimeout):
		c.once.Do(c.kill)
		t.Fatalf("capture %s: tcpdump not capturing after %v: %s", c.name, captureTimeout, c.stderr.String())
	}
	return c
}

// readStderr collects tcpdump's standard error, closes ready at its
// "listening on" line and drained at end of file.
func (c *Capture) readStderr(r io.ReadCloser, ready chan<- struct{}) {
	defer close(c.drained)
	defer r.Close()
	sc := bufio.NewScanner(r)
	for signalled := false; sc.Scan(); {
		c.stderr.WriteString(sc.Text() + "\n")
		if !signalled && strings.Contains(sc.Text(), "listening on") {
			signalled = true
			close(ready)
		}
	}
}

// kill ends tcpdump at once (start timeout).
func (c *Capture) kill() {
	_ = c.cmd.Process.Kill()
	<-c.drained
	_ = c.cmd.Wait()
}

// Stop terminates tcpdump (SIGTERM to its PID, SIGKILL after a timeout),
// waits for it and returns every packet captured. Later calls return the
// same packets.
func (c *Capture) Stop() []Packet {
	c.t.Helper()
	c.once.Do(func() {
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			c.t.Errorf("capture %s: stop tcpdump: %v", c.name, err)
		}
		select {
		case <-c.drained:
		case <-time.After(captureTimeout):
			_ = c.cmd.Process.Kill()
			<-c.drained
		}
		if err := c.cmd.Wait(); err != nil {
			c.t.Errorf("capture %s: tcpdump: %v: %s", c.name, err, c.stderr.String())
		}
		pkts, err := c.read()
		if err != nil {
			c.t.Errorf("capture %s: %v", c.name, err)
		}
		c.packets = pkts
	})
	return c.packets
}

// File returns the path of the pcap file tcpdump writes, for tests that
// need a packet's raw bytes (checksums, options). It is complete once Stop
// has returned.
func (c *Capture) File() string { return c.file }

// Packets returns the packets captured so far, without stopping.
func (c *Capture) Packets() []Packet {
	c.t.Helper()
	pkts, err := c.read()
	if err != nil {
		c.t.Fatalf("capture %s: %v", c.name, err)
	}
	return pkts
}

// WaitFor polls the capture until cond holds for the packets captured so
// far or timeout passes, and reports whether cond held.
func (c *Capture) WaitFor(timeout time.Duration, cond func([]Packet) bool) bool {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond(c.Packets()) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// read decodes the pcap file as written so far; a record cut short by a
// concurrent write ends the list.
func (c *Capture) read() ([]Packet, error) {
	f, err := os.Open(c.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // tcpdump has not written its header yet
	}
	if err != nil {
		return nil, fmt.Errorf("open pcap: %w", err)
	}
	defer f.Close()
	return ReadPcap(f)
}

// ReadPcap decodes the TCP segments of a pcap or pcapng stream with
// internal/decode (any link type it supports: Ethernet, Linux cooked, raw
// IP, loopback); packets it does not decode are skipped. A stream that ends
// early (a file header or a last record still being written) ends the list
// without error.
func ReadPcap(r io.Reader) ([]Packet, error) {
	cr, err := capture.NewReader(r, "pcap")
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, nil // no whole file header yet
	}
	if err != nil {
		return nil, err
	}
	p := decode.NewParser()
	var pkts []Packet
	for {
		f, err := cr.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return pkts, nil
		}
		if err != nil {
			return pkts, err
		}
		var seg statetrack.Segment
		_, err = p.DecodeFrame(f.Data, f.OrigLen, cr.LinkType(), &seg)
		if errors.Is(err, decode.ErrUnsupportedLink) {
			return pkts, err
		}
		if err == nil {
			pkts = append(pkts, Packet{Time: f.TS, Segment: seg})
		}
	}
}
