package statetrack_test

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

const captureDir = "testdata/kernel-captures"

// defaultKernel is the real Linux stack of a checkpoint that names none
// (the packetdrill captures).
var defaultKernel = netip.MustParseAddr("192.168.0.1")

// blindSpots are points where the kernel's state cannot be seen on the
// wire: the test asserts what the tracker infers there instead, so that a
// change in the blind spot is noticed.
var blindSpots = map[string][]struct {
	afterPkt int
	tracker  statetrack.State
	kernel   string
	reason   string
}{
	"user_timeout.pcap": {{
		afterPkt: 8,
		tracker:  statetrack.FinWait1,
		kernel:   "CLOSED",
		reason: "TCP_USER_TIMEOUT killed the socket silently after the last FIN " +
			"retransmission (no packet says so); its RST at packet 9 reveals it",
	}},
}

// probeKinds are, for the captures of keepalive probing, the packets that
// the tracker must classify as keepalive or keepalive-ack (by packet
// number, with their nth): no other packet of those captures may be
// either. In both, the probes come from the client, one below its
// snd_nxt, and the answers from the server.
var probeKinds = map[string]map[int]struct {
	kind statetrack.Kind
	nth  uint32
}{
	"keepalive.pcap": {
		8: {statetrack.Keepalive, 1}, 9: {statetrack.KeepaliveAck, 1},
		10: {statetrack.Keepalive, 2}, 11: {statetrack.KeepaliveAck, 2},
	},
	"keepalive-answers-lost.pcap": {
		8: {statetrack.Keepalive, 1}, 9: {statetrack.KeepaliveAck, 1},
		10: {statetrack.Keepalive, 2}, 11: {statetrack.KeepaliveAck, 2},
		12: {statetrack.Keepalive, 3}, 13: {statetrack.KeepaliveAck, 3},
	},
}

// TestKernelCaptures replays real Linux captures and checks the state
// inferred for the kernel's endpoint against the kernel's own ss state at
// each checkpoint of MANIFEST.tsv.
func TestKernelCaptures(t *testing.T) {
	rows := readManifest(t)
	if len(rows) == 0 {
		t.Fatal("empty manifest")
	}
	for _, row := range rows {
		t.Run(strings.TrimSuffix(row.file, ".pcap"), func(t *testing.T) {
			checks, err := parseCheckpoints(row.ss)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range blindSpots[row.file] {
				t.Logf("blind spot after packet %d: kernel %s, tracker infers %s: %s", b.afterPkt, b.kernel, b.tracker, b.reason)
			}
			got := replayKernelStates(t, filepath.Join(captureDir, row.file))
			for _, c := range checks {
				if c.afterPkt < 1 || c.afterPkt > len(got) {
					t.Fatalf("checkpoint after packet %d, capture has %d packets", c.afterPkt, len(got))
				}
				if st := got[c.afterPkt-1].of(c.kernel); st != c.want {
					t.Errorf("after packet %d: kernel endpoint %s inferred %s, ss says %s", c.afterPkt, c.kernel, st, c.want)
				}
			}
			if want, ok := probeKinds[row.file]; ok {
				checkProbeKinds(t, got, want)
			}
			for _, b := range blindSpots[row.file] {
				if st := got[b.afterPkt-1].of(defaultKernel); st != b.tracker {
					t.Errorf("blind spot after packet %d: inferred %s, want %s (%s)", b.afterPkt, st, b.tracker, b.reason)
				}
			}
		})
	}
}

// checkProbeKinds checks the kinds keepalive and keepalive-ack against
// want (see probeKinds): a probe is never a retransmission.
func checkProbeKinds(t *testing.T, got []inferred, want map[int]struct {
	kind statetrack.Kind
	nth  uint32
}) {
	t.Helper()
	for i, in := range got {
		w, listed := want[i+1]
		probeKind := in.kind == statetrack.Keepalive || in.kind == statetrack.KeepaliveAck
		switch {
		case listed && (in.kind != w.kind || in.nth != w.nth || in.retx):
			t.Errorf("packet %d: %s nth %d (retransmission %v), want %s nth %d", i+1, in.kind, in.nth, in.retx, w.kind, w.nth)
		case !listed && probeKind:
			t.Errorf("packet %d: %s, want neither keepalive nor keepalive-ack", i+1, in.kind)
		}
	}
}

type manifestRow struct{ file, ss string }

func readManifest(t *testing.T) []manifestRow {
	t.Helper()
	return readManifestIn(t, captureDir)
}

// readManifestIn reads the MANIFEST.tsv of the captures in dir.
func readManifestIn(t *testing.T, dir string) []manifestRow {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma, r.LazyQuotes = '\t', true
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatalf("read manifest: %v", err)
	}
	col := map[string]int{}
	for i, name := range recs[0] {
		col[name] = i
	}
	var rows []manifestRow
	for _, rec := range recs[1:] {
		rows = append(rows, manifestRow{file: rec[col["file"]], ss: rec[col["kernel_state_ss"]]})
	}
	return rows
}

type checkpoint struct {
	afterPkt int
	kernel   netip.Addr
	want     statetrack.State
}

var checkpointRE = regexp.MustCompile(`^after pkt (\d+) \([^)]*\): (.+)$`)

// parseCheckpoints parses "after pkt 9 (script end): TIME-WAIT; after pkt
// 10 (...): CLOSED (no socket)", where a state may be preceded by the
// kernel endpoint's address, and one checkpoint may list several
// ("198.19.2.2 TIME-WAIT, 198.18.1.2 TIME-WAIT").
func parseCheckpoints(s string) ([]checkpoint, error) {
	var out []checkpoint
	for _, part := range strings.Split(s, ";") {
		m := checkpointRE.FindStringSubmatch(strings.TrimSpace(part))
		if m == nil {
			return nil, fmt.Errorf("parse checkpoint %q: no match", part)
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, fmt.Errorf("parse checkpoint %q: %w", part, err)
		}
		for _, one := range strings.Split(m[2], ", ") {
			c := checkpoint{afterPkt: n, kernel: defaultKernel}
			if addr, rest, ok := strings.Cut(one, " "); ok {
				if a, err := netip.ParseAddr(addr); err == nil {
					c.kernel, one = a, rest
				}
			}
			name, _, _ := strings.Cut(one, " (") // "CLOSED (no socket)"
			if c.want, err = statetrack.ParseState(name); err != nil {
				return nil, fmt.Errorf("parse checkpoint %q: %w", part, err)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// inferred is what the tracker reports after one packet of a capture.
type inferred struct {
	client, server netip.Addr
	states         [2]statetrack.State
	kind           statetrack.Kind
	nth            uint32
	retx           bool
}

// of returns the inferred state of the endpoint at addr (CLOSED when the
// packet's tuple is not tracked or addr is not on it).
func (in inferred) of(addr netip.Addr) statetrack.State {
	switch addr {
	case in.client:
		return in.states[statetrack.Client]
	case in.server:
		return in.states[statetrack.Server]
	}
	return statetrack.Closed
}

// replayKernelStates observes and delivers every packet of a capture and
// returns what the tracker infers after each one.
func replayKernelStates(t *testing.T, path string) []inferred {
	t.Helper()
	tr := statetrack.New(statetrack.Config{ServerPorts: []uint16{8080}})
	var out []inferred
	eachPacket(t, path, func(n int, seg *statetrack.Segment, at time.Time) {
		o := tr.Observe(seg, at)
		after, _ := tr.Deliver(&o, at)
		in := inferred{kind: o.Kind, nth: o.Nth, retx: o.Retransmission}
		if o.ConnID != 0 {
			in.client, in.server, in.states = o.Client.Addr(), o.Server.Addr(), after
		}
		closer := ""
		if o.Closer != statetrack.NoCloser {
			closer = " " + o.Closer.String()
		}
		t.Logf("%2d %s>%s %-4s seq=%d ack=%d len=%d: %s n=%d%s, before %v, client %s server %s",
			n, seg.Src, seg.Dst, seg.Flags, seg.Seq, seg.Ack, seg.Len, o.Kind, o.Nth, closer, o.Before, after[statetrack.Client], after[statetrack.Server])
		out = append(out, in)
	})
	return out
}

// eachPacket calls f with every packet of a capture, decoded, with its
// number (from 1) and capture time.
func eachPacket(t *testing.T, path string, f func(n int, seg *statetrack.Segment, at time.Time)) {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	r, err := pcapgo.NewReader(file)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	p := decode.NewParser()
	for n := 1; ; n++ {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("%s packet %d: %v", path, n, err)
		}
		var seg statetrack.Segment
		if err := p.Decode(data, &seg); err != nil {
			t.Fatalf("%s packet %d: %v", path, n, err)
		}
		f(n, &seg, ci.Timestamp)
	}
}
