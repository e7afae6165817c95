package oracle

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CTEvent is one TCP line of `conntrack -E -o timestamp,id`: nf_conntrack
// reporting a new entry, a state change or the entry's end.
type CTEvent struct {
	Time time.Time
	// Type is "NEW", "UPDATE" or "DESTROY".
	Type string
	// State is conntrack's TCP state (SYN_SENT, SYN_RECV, ESTABLISHED,
	// FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2, NONE);
	// for DESTROY the state the entry ended in; "" when the event carries
	// none.
	State string
	// Src and Dst are the original direction's endpoints: the client and
	// the server.
	Src, Dst netip.AddrPort
	// ID is the entry's id: one incarnation of the tuple.
	ID uint64
}

// Conn returns the connection as the tracker's events name it,
// "client:port->server:port".
func (e CTEvent) Conn() string { return e.Src.String() + "->" + e.Dst.String() }

// ParseCTEvent parses one line of `conntrack -E -p tcp -o timestamp,id`:
//
//	[1796154758.206678]	    [NEW] tcp      6 120 SYN_SENT src=198.18.1.2 dst=198.19.2.2 sport=56840 dport=8080 [UNREPLIED] src=… id=3860085856
//	[1796154801.983688]	[DESTROY] tcp      6 TIME_WAIT src=198.18.1.2 … id=2373505667
func ParseCTEvent(line string) (CTEvent, error) {
	var e CTEvent
	f := strings.Fields(line)
	if len(f) < 6 || !strings.HasPrefix(f[0], "[") || !strings.HasPrefix(f[1], "[") || f[2] != "tcp" {
		return e, fmt.Errorf("conntrack event %q: want [time] [TYPE] tcp …", line)
	}
	sec, frac, _ := strings.Cut(strings.Trim(f[0], "[]"), ".")
	s, err1 := strconv.ParseInt(sec, 10, 64)
	us, err2 := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	if err1 != nil || err2 != nil {
		return e, fmt.Errorf("conntrack event %q: bad timestamp", line)
	}
	e.Time = time.Unix(s, us*1000)
	e.Type = strings.Trim(f[1], "[]")
	rest := f[4:] // after "tcp 6"
	if _, err := strconv.Atoi(rest[0]); err == nil {
		rest = rest[1:] // the timeout, absent from DESTROY
	}
	if !strings.Contains(rest[0], "=") {
		e.State, rest = rest[0], rest[1:] // absent when the event carries no TCP state
	}
	var src, dst netip.Addr
	var sport, dport uint64
	seen := map[string]bool{}
	for _, kv := range rest {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || seen[k] && k != "id" {
			continue // flags, and the reply direction's tuple
		}
		seen[k] = true
		var err error
		switch k {
		case "src":
			src, err = netip.ParseAddr(v)
		case "dst":
			dst, err = netip.ParseAddr(v)
		case "sport":
			sport, err = strconv.ParseUint(v, 10, 16)
		case "dport":
			dport, err = strconv.ParseUint(v, 10, 16)
		case "id":
			e.ID, err = strconv.ParseUint(v, 10, 64)
		}
		if err != nil {
			return e, fmt.Errorf("conntrack event %q: %s: %w", line, k, err)
		}
	}
	if !src.IsValid() || !dst.IsValid() || !seen["id"] {
		return e, fmt.Errorf("conntrack event %q: want src, dst and id", line)
	}
	e.Src, e.Dst = netip.AddrPortFrom(src, uint16(sport)), netip.AddrPortFrom(dst, uint16(dport))
	return e, nil
}

// Command makes a command that runs in the router's namespace, such as
// netlab's NS.Command.
type Command func(name string, args ...string) *exec.Cmd

// Timeouts are the router namespace's nf_conntrack TCP timeouts that
// PrepareRouter shortens, so that the entries of closed connections end
// (DESTROY) within a test: TIME_WAIT lasts as long as the tracker's 2×MSL
// of Config(CTMSL), CLOSE (after an RST) one second.
var Timeouts = map[string]string{
	"net.netfilter.nf_conntrack_tcp_timeout_time_wait": "2",
	"net.netfilter.nf_conntrack_tcp_timeout_close":     "1",
}

// CTMSL is the tracker's MSL that matches Timeouts' TIME_WAIT.
const CTMSL = time.Second

// Settle is how long both trackers need after the workload's last
// connection, its server still listening, to end every connection: the
// TIME_WAITs (2×CTMSL, and the tracker reaps once a second), and a stale
// SYN's connection: a SYN retransmission of the lost-syn-ack shape
// overtaken by its whole connection opens one on the server (see
// statetrack's doc), whose first SYN-ACK the shape's rule drops again;
// the client's TIME_WAIT ends at the second (1 s) and the client's RST to
// the third (3 s) ends it; conntrack's CLOSE then lasts 1 s, and reaping
// takes up to 100 ms. A listener closed before that drops the embryonic
// connection silently, and neither tracker sees it end.
const Settle = 5 * time.Second

// PrepareRouter turns nf_conntrack on in the router's namespace and sets
// Timeouts. A raw-table CT rule (IPv4 and IPv6) makes conntrack track the
// namespace's TCP packets (it tracks a namespace only while a rule needs
// it) and limits the events of their entries to the ones compared: new,
// state change (protoinfo) and destroy. Without the limit tcpchaos's
// connmark updates add an event per queued packet and conntrack -E loses
// events (ENOBUFS) at a few thousand a second. The namespace is the
// test's own: nothing is undone.
func PrepareRouter(run Command) error {
	for _, ipt := range []string{"iptables", "ip6tables"} {
		out, err := run(ipt, "-w", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "-j", "CT", "--ctevents", "new,protoinfo,destroy").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: conntrack events: %w: %s", ipt, err, out)
		}
	}
	for k, v := range Timeouts {
		if out, err := run("sysctl", "-qw", k+"="+v).CombinedOutput(); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w: %s", k, v, err, out)
		}
	}
	return nil
}

// ErrLostEvents is Stop's error when conntrack -E reported that it lost
// events: the comparison would be blind to some connections, and the run
// should be repeated. conntrack-tools 1.4.7 applies --buffer-size to a
// socket of its own that receives no event; the socket that does keeps
// the default 208 KiB (net.core.rmem_default, which a network namespace
// cannot change), a few hundred events. So conntrack -E writes to a file
// (a pipe whose reader falls behind would stop it), runs under
// SCHED_FIFO, to read its socket as events come on a loaded machine, and
// the expired entries are reaped a few at a time (reap).
var ErrLostEvents = errors.New("conntrack -E lost events")

// monitorBuffer is the --buffer-size conntrack is asked for (see
// ErrLostEvents: 1.4.7 applies it to the wrong socket; a fixed version
// gets a buffer for tens of thousands of events).
const monitorBuffer = "67108864"

// monitorTimeout bounds the wait for conntrack to start and to stop.
const monitorTimeout = 10 * time.Second

// probe is the entry Monitor inserts to know that conntrack -E listens;
// probeText is how its events read.
var probe = []string{"-p", "tcp", "-s", "127.0.0.2", "-d", "127.0.0.3", "--sport", "1", "--dport", "2"}

const probeText = "src=127.0.0.2 dst=127.0.0.3 sport=1 dport=2"

// Monitor is a `conntrack -E` running in the router's namespace.
type Monitor struct {
	run      Command
	stopReap chan struct{} // closed by Stop
	stopOnce sync.Once
	reaped   chan struct{} // closed when reapLoop returned
	cmd      *exec.Cmd
	file     string        // conntrack's standard output
	done     chan struct{} // closed when conntrack has exited
	err      error         // its exit status, once done
	mu       sync.Mutex
	events   []CTEvent
	bad      []string // lines that did not parse
	stderr   strings.Builder
	lostAt   time.Time // when conntrack reported lost events
}

// stampedWriter is the Monitor as conntrack's standard error: it keeps
// the text and notes when conntrack reports lost events.
type stampedWriter Monitor

func (w *stampedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lostAt.IsZero() && strings.Contains(string(p), "ENOBUFS") {
		w.lostAt = time.Now()
	}
	return w.stderr.Write(p)
}

// StartMonitor starts `conntrack -E` for TCP in the router's namespace,
// writing to file (a pipe that its reader drains late would stop conntrack
// reading its socket: see ErrLostEvents), under SCHED_FIFO, and returns
// once it reports events (it inserts a probe entry and waits for its
// event). Until Stop, the Monitor also reaps expired entries (see reap)
// every reapEvery, so that their DESTROY events come in time.
func StartMonitor(run Command, file string) (*Monitor, error) {
	out, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("conntrack -E: %w", err)
	}
	defer out.Close() // conntrack has its own descriptor
	m := &Monitor{run: run, file: file, stopReap: make(chan struct{}), reaped: make(chan struct{}), done: make(chan struct{}),
		cmd: run("chrt", "--fifo", "10", "conntrack", "-E", "-p", "tcp", "-o", "timestamp,id", "-b", monitorBuffer)}
	m.cmd.Stdout, m.cmd.Stderr = out, (*stampedWriter)(m)
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start conntrack -E: %w", err)
	}
	go func() {
		m.err = m.cmd.Wait()
		close(m.done)
	}()
	deadline := time.Now().Add(monitorTimeout)
	for {
		// The insert fails while the probe exists; its event is what counts.
		_ = run("conntrack", append(append([]string{"-I"}, probe...), "--state", "CLOSE", "--timeout", "1")...).Run()
		select {
		case <-m.done:
			close(m.reaped)
			m.mu.Lock()
			defer m.mu.Unlock()
			return nil, fmt.Errorf("conntrack -E exited: %v: %s", m.err, strings.TrimSpace(m.stderr.String()))
		case <-time.After(100 * time.Millisecond):
		}
		if b, err := os.ReadFile(file); err == nil && strings.Contains(string(b), probeText) {
			_ = run("conntrack", append([]string{"-D"}, probe...)...).Run()
			go m.reapLoop()
			return m, nil
		}
		if time.Now().After(deadline) {
			close(m.reaped)
			_, err := m.Stop()
			return nil, errors.Join(fmt.Errorf("conntrack -E reports nothing after %v", monitorTimeout), err)
		}
	}
}

// readEvents parses the output file, without the probe's events and
// conntrack's closing summary.
func (m *Monitor) readEvents() error {
	b, err := os.ReadFile(m.file)
	if err != nil {
		return fmt.Errorf("conntrack -E output: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		if line == "" || strings.Contains(line, "flow events have been shown") || strings.Contains(line, probeText) {
			continue
		}
		e, err := ParseCTEvent(line)
		if err != nil {
			m.bad = append(m.bad, line)
			continue
		}
		m.events = append(m.events, e)
	}
	return nil
}

// reapEvery is how often the Monitor dumps the table (see reap).
const reapEvery = 100 * time.Millisecond

// reap makes nf_conntrack end the entries whose timeout has run out, each
// with its DESTROY event, and returns how many entries are left. Its
// garbage collector may take tens of seconds to get to them, but a dump
// (conntrack -L) removes the expired entries it meets. Dumping often
// keeps the DESTROY events few at a time: a single dump of hundreds of
// expired entries overflows conntrack -E's socket (ErrLostEvents).
func (m *Monitor) reap() (left int, err error) {
	for _, family := range []string{"ipv4", "ipv6"} {
		out, err := m.run("conntrack", "-L", "-p", "tcp", "-f", family).Output()
		if err != nil {
			return 0, fmt.Errorf("conntrack -L -f %s: %w", family, err)
		}
		left += strings.Count(string(out), "\n")
	}
	return left, nil
}

// reapLoop reaps every reapEvery until stop closes.
func (m *Monitor) reapLoop() {
	defer close(m.reaped)
	for {
		select {
		case <-m.stopReap:
			return
		case <-time.After(reapEvery):
			_, _ = m.reap()
		}
	}
}

// Drain waits until nf_conntrack has no TCP entry left (every timeout ran
// out and the entry was reaped), or timeout passes; it returns how many
// entries are left.
func (m *Monitor) Drain(timeout time.Duration) (left int, err error) {
	deadline := time.Now().Add(timeout)
	for {
		if left, err = m.reap(); err != nil || left == 0 || time.Now().After(deadline) {
			return left, err
		}
		time.Sleep(reapEvery)
	}
}

// Stop ends conntrack (SIGTERM to its PID, SIGKILL after a timeout) and
// returns its events. It fails when conntrack lost events (ENOBUFS) or
// printed a line that does not parse.
func (m *Monitor) Stop() ([]CTEvent, error) {
	m.stopOnce.Do(func() { close(m.stopReap) })
	<-m.reaped
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(monitorTimeout):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	if m.events == nil {
		if err := m.readEvents(); err != nil {
			errs = append(errs, err)
		}
	}
	if !m.lostAt.IsZero() {
		errs = append(errs, fmt.Errorf("%w (ENOBUFS) at %s: %s", ErrLostEvents, m.lostAt.Format("15:04:05.000"), strings.TrimSpace(m.stderr.String())))
	}
	if len(m.bad) > 0 {
		errs = append(errs, fmt.Errorf("conntrack -E: %d lines not understood, the first: %q", len(m.bad), m.bad[0]))
	}
	return m.events, errors.Join(errs...)
}
