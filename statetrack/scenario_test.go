package statetrack_test

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected traces of testdata/*.txt")

// TestScenarios runs the scripts in testdata/*.txt. A script is one
// directive or packet per line, then a line "----", then the expected
// trace; -rewrite regenerates the trace. See scriptRunner for the syntax.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("found %d scenario files, want at least 15", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			script, want, found := strings.Cut(string(raw), "----\n")
			if !found && !*rewrite {
				t.Fatalf("%s: no ---- line", file)
			}
			got, err := runScript(script)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if *rewrite {
				if err := os.WriteFile(file, []byte(script+"----\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("%s: trace differs (run with -rewrite and review the diff)\n--- got\n%s--- want\n%s", file, got, want)
			}
		})
	}
}

// scriptRunner interprets a scenario script:
//
//	config msl=1s max=2 idle=5m quiet=1h serverport=8080,443   new tracker (first line only)
//	tuple c=198.18.0.1:40000 s=198.18.1.1:8080          current tuple ("tuple self=ADDR:PORT" for a self-connect)
//	[drop|hold|dup|quiet] c>s FLAGS [seq=N] [ack=N] [len=N]   a packet (s>c the other way); FLAGS as tcpdump: S S. . P. F. FP. R R. none
//	                                                    (quiet: delivered, then Tracker.Quieting and QuietInfo: what follows goes unseen)
//	forge [outside] s>c R seq=N                          an RST the middle sends in s's name (Tracker.Forge; outside: not exact)
//	retract                                             take back the last packet's sequence space (Tracker.Retract)
//	release N                                           deliver the Nth held packet
//	advance 61s                                         move the clock and call Expire
//	wait 61s                                            move the clock only (expiry in passing)
//	stats                                               print Len and Stats
//
// Lines starting with # are comments. The trace has one line per packet:
// the packet, then "#conn kind n=nth" and tags (idle=D: the gap before
// it), then client and server
// states after Observe, then after delivery ("dropped", "held N"); one
// line per Gone; one per release, advance and stats.
type scriptRunner struct {
	tr    *statetrack.Tracker
	cfg   statetrack.Config
	start time.Time
	now   time.Time
	c, s  netip.AddrPort
	held  []held
	last  statetrack.Observation
	conns map[uint64]int
	gone  map[uint64]bool
	out   strings.Builder
}

type held struct {
	line string
	obs  statetrack.Observation
}

func runScript(script string) (string, error) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	r := &scriptRunner{
		start: start, now: start,
		c:     netip.MustParseAddrPort("198.18.0.1:40000"),
		s:     netip.MustParseAddrPort("198.18.1.1:8080"),
		cfg:   statetrack.Config{ServerPorts: []uint16{8080}},
		conns: map[uint64]int{},
		gone:  map[uint64]bool{},
	}
	for n, line := range strings.Split(script, "\n") {
		line = strings.Join(strings.Fields(line), " ")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := r.exec(line); err != nil {
			return "", fmt.Errorf("line %d %q: %w", n+1, line, err)
		}
	}
	return r.out.String(), nil
}

func (r *scriptRunner) tracker() *statetrack.Tracker {
	if r.tr == nil {
		cfg := r.cfg
		cfg.OnGone = r.onGone
		r.tr = statetrack.New(cfg)
	}
	return r.tr
}

func (r *scriptRunner) exec(line string) error {
	f := strings.Fields(line)
	switch f[0] {
	case "config":
		if r.tr != nil {
			return fmt.Errorf("config after the first packet")
		}
		return r.config(f[1:])
	case "tuple":
		return r.tuple(f[1:])
	case "retract":
		r.tracker().Retract(&r.last)
		fmt.Fprintf(&r.out, "retract\n")
		return nil
	case "release":
		n, err := strconv.Atoi(f[len(f)-1])
		if err != nil || n < 1 || n > len(r.held) || r.held[n-1].line == "" {
			return fmt.Errorf("release: no held packet %q", f[len(f)-1])
		}
		h := r.held[n-1]
		r.held[n-1].line = ""
		fmt.Fprintf(&r.out, "release %d: %s | %s\n", n, h.line, r.deliver(&h.obs))
		return nil
	case "advance", "wait":
		if len(f) != 2 {
			return fmt.Errorf("want %s DURATION", f[0])
		}
		d, err := time.ParseDuration(f[1])
		if err != nil {
			return err
		}
		r.now = r.now.Add(d)
		fmt.Fprintf(&r.out, "%s %s (t=+%s)\n", f[0], f[1], r.now.Sub(r.start))
		if f[0] == "advance" {
			r.tracker().Expire(r.now)
		}
		return nil
	case "stats":
		st := r.tracker().Stats()
		fmt.Fprintf(&r.out, "stats | len=%d connections=%d new-incarnations=%d midstream=%d evicted=%d time-wait-expired=%d idle-expired=%d untracked=%d quieted=%d\n",
			r.tracker().Len(), st.Connections, st.NewIncarnations, st.Midstream, st.Evicted, st.TimeWaitExpired, st.IdleExpired, st.Untracked, st.Quieted)
		return nil
	}
	return r.packet(line, f)
}

func (r *scriptRunner) config(args []string) error {
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		var err error
		switch k {
		case "msl":
			r.cfg.MSL, err = time.ParseDuration(v)
		case "idle":
			r.cfg.IdleTimeout, err = time.ParseDuration(v)
		case "quiet":
			r.cfg.QuietTimeout, err = time.ParseDuration(v)
		case "max":
			r.cfg.MaxConnections, err = strconv.Atoi(v)
		case "serverport":
			r.cfg.ServerPorts = nil
			for _, p := range strings.Split(v, ",") {
				n, perr := strconv.ParseUint(p, 10, 16)
				if perr != nil {
					return perr
				}
				r.cfg.ServerPorts = append(r.cfg.ServerPorts, uint16(n))
			}
		default:
			return fmt.Errorf("unknown config key %q", k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *scriptRunner) tuple(args []string) error {
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		ap, err := netip.ParseAddrPort(v)
		if err != nil {
			return err
		}
		switch k {
		case "c":
			r.c = ap
		case "s":
			r.s = ap
		case "self":
			r.c, r.s = ap, ap
		default:
			return fmt.Errorf("unknown tuple key %q", k)
		}
	}
	return nil
}

func (r *scriptRunner) packet(line string, f []string) error {
	mode := ""
	switch f[0] {
	case "drop", "hold", "dup", "quiet", "forge":
		mode, f = f[0], f[1:]
	}
	exact := true
	if mode == "forge" && len(f) > 0 && f[0] == "outside" {
		exact, f = false, f[1:]
	}
	if len(f) < 2 {
		return fmt.Errorf("want DIR FLAGS")
	}
	seg := statetrack.Segment{Src: r.c, Dst: r.s}
	switch f[0] {
	case "c>s":
	case "s>c":
		seg.Src, seg.Dst = r.s, r.c
	default:
		return fmt.Errorf("unknown direction %q", f[0])
	}
	flags, err := parseFlags(f[1])
	if err != nil {
		return err
	}
	seg.Flags = flags
	for _, a := range f[2:] {
		k, v, _ := strings.Cut(a, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		switch k {
		case "seq":
			seg.Seq = seqnum.Value(n)
		case "ack":
			seg.Ack = seqnum.Value(n)
		case "len":
			seg.Len = uint32(n)
		default:
			return fmt.Errorf("unknown packet field %q", k)
		}
	}
	if mode == "forge" {
		o, after := r.tracker().Forge(&seg, r.now, exact)
		fmt.Fprintf(&r.out, "%s | %s | %s | forged\n", line, r.describe(&o), states(after))
		return nil
	}
	o := r.tracker().Observe(&seg, r.now)
	r.last = o
	desc := r.describe(&o)
	var dl string
	switch mode {
	case "drop":
		dl = "dropped"
	case "hold":
		r.held = append(r.held, held{line: strings.Join(f, " "), obs: o})
		dl = fmt.Sprintf("held %d", len(r.held))
	case "dup":
		dl = r.deliver(&o) + ", again " + r.deliver(&o)
	case "quiet":
		dl = r.deliver(&o)
		r.tracker().Quieting(o.ConnID)
		if info, moved, ok := r.tracker().QuietInfo(o.ConnID, r.now); ok {
			dl += ", quiet"
			if moved {
				dl += ", third ACK assumed: " + states(info.States)
			}
		}
	default:
		dl = r.deliver(&o)
	}
	fmt.Fprintf(&r.out, "%s | %s | %s | %s\n", line, desc, states(o.After), dl)
	return nil
}

func (r *scriptRunner) deliver(o *statetrack.Observation) string {
	after, changed := r.tracker().Deliver(o, r.now)
	if r.gone[o.ConnID] {
		if changed {
			return "BUG: delivered to a gone connection"
		}
		return "not delivered (connection gone)"
	}
	return states(after)
}

func (r *scriptRunner) describe(o *statetrack.Observation) string {
	if o.ConnID == 0 {
		return fmt.Sprintf("untracked %s from %s", o.Kind, o.From)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s n=%d", r.conn(o.ConnID), o.Kind, o.Nth)
	for _, tag := range []struct {
		on   bool
		name string
	}{
		{o.Retransmission, "retx"},
		{o.Closer != statetrack.NoCloser, o.Closer.String()},
		{o.NewConn, "new"},
		{o.NewIncarnation, "new-incarnation"},
		{o.NewConn && o.Midstream, "midstream"},
		{o.Client != r.c, "client=" + o.Client.String()},
		{o.Idle > 0, "idle=" + o.Idle.String()},
	} {
		if tag.on {
			b.WriteString(" " + tag.name)
		}
	}
	return b.String()
}

func (r *scriptRunner) conn(id uint64) int {
	n, ok := r.conns[id]
	if !ok {
		n = len(r.conns) + 1
		r.conns[id] = n
	}
	return n
}

func (r *scriptRunner) onGone(g statetrack.Gone) {
	r.gone[g.ConnID] = true
	fmt.Fprintf(&r.out, "gone #%d %s at +%s | %s -> %s\n", r.conn(g.ConnID), g.Reason, g.At.Sub(r.start), states(g.Before), states(g.After))
}

func states(st [2]statetrack.State) string {
	return fmt.Sprintf("c:%s s:%s", st[statetrack.Client], st[statetrack.Server])
}

// parseFlags parses tcpdump's flag notation ("S.", "FP.", "R", "none").
func parseFlags(s string) (statetrack.Flags, error) {
	if s == "none" {
		return 0, nil
	}
	var f statetrack.Flags
	for _, c := range s {
		bit, ok := map[rune]statetrack.Flags{
			'S': statetrack.SYN, 'F': statetrack.FIN, 'P': statetrack.PSH, 'R': statetrack.RST,
			'U': statetrack.URG, 'E': statetrack.ECE, 'W': statetrack.CWR, '.': statetrack.ACK,
		}[c]
		if !ok {
			return 0, fmt.Errorf("unknown flag %q in %q", c, s)
		}
		f |= bit
	}
	return f, nil
}
