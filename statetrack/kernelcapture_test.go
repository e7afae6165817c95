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

	"github.com/google/gopacket/pcapgo"

	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

const captureDir = "testdata/kernel-captures"

// kernelAddr is the real Linux stack in every capture.
var kernelAddr = netip.MustParseAddr("192.168.0.1")

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
				if st := got[c.afterPkt-1]; st != c.want {
					t.Errorf("after packet %d: kernel endpoint inferred %s, ss says %s", c.afterPkt, st, c.want)
				}
			}
			for _, b := range blindSpots[row.file] {
				if st := got[b.afterPkt-1]; st != b.tracker {
					t.Errorf("blind spot after packet %d: inferred %s, want %s (%s)", b.afterPkt, st, b.tracker, b.reason)
				}
			}
		})
	}
}

type manifestRow struct{ file, ss string }

func readManifest(t *testing.T) []manifestRow {
	t.Helper()
	f, err := os.Open(filepath.Join(captureDir, "MANIFEST.tsv"))
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
	want     statetrack.State
}

var checkpointRE = regexp.MustCompile(`^after pkt (\d+) \([^)]*\): (.+)$`)

// parseCheckpoints parses "after pkt 9 (script end): TIME-WAIT; after pkt
// 10 (...): CLOSED (no socket)".
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
		name, _, _ := strings.Cut(m[2], " (") // "CLOSED (no socket)"
		st, err := statetrack.ParseState(name)
		if err != nil {
			return nil, fmt.Errorf("parse checkpoint %q: %w", part, err)
		}
		out = append(out, checkpoint{afterPkt: n, want: st})
	}
	return out, nil
}

// replayKernelStates observes and delivers every packet of a capture and
// returns the kernel endpoint's state after each one (CLOSED when its
// tuple is not tracked).
func replayKernelStates(t *testing.T, path string) []statetrack.State {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	tr := statetrack.New(statetrack.Config{ServerPorts: []uint16{8080}})
	p := decode.NewParser()
	var states []statetrack.State
	for n := 1; ; n++ {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return states
		}
		if err != nil {
			t.Fatalf("%s packet %d: %v", path, n, err)
		}
		var seg statetrack.Segment
		if err := p.Decode(data, &seg); err != nil {
			t.Fatalf("%s packet %d: %v", path, n, err)
		}
		o := tr.Observe(&seg, ci.Timestamp)
		after, _ := tr.Deliver(&o, ci.Timestamp)
		st := statetrack.Closed
		switch kernelAddr {
		case o.Client.Addr():
			st = after[statetrack.Client]
		case o.Server.Addr():
			st = after[statetrack.Server]
		}
		if o.ConnID == 0 {
			st = statetrack.Closed
		}
		t.Logf("%2d %s>%s %-4s seq=%d ack=%d len=%d: %s n=%d, kernel %s", n, seg.Src, seg.Dst, seg.Flags, seg.Seq, seg.Ack, seg.Len, o.Kind, o.Nth, st)
		states = append(states, st)
	}
}
