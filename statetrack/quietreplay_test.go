package statetrack_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// sharedCaptureDir holds kernel captures shared with other tools; those
// not in captureDir too are replayed as well.
const sharedCaptureDir = "../../shared/testdata/kernel-captures"

// noSavings are the captures where the quiet phases cannot save a
// crossing of user space over a quiet data phase: no handshake completes
// (the connection is closed in SYN_SENT). Every other one has a third ACK
// or an ACK of a first FIN that the kernel lets bypass the queue.
var noSavings = []string{"close-on-syn-sent.pcap"}

// quietDataPhaseSpots are checkpoints where the quiet data phase (not the
// quiet handshake or close) infers otherwise than the kernel: the test
// asserts what it infers there, so that a change is noticed.
var quietDataPhaseSpots = map[string][]struct {
	afterPkt int
	tracker  statetrack.State
	reason   string
}{
	"rfc5961-rst-in-window.pcap": {
		{6, statetrack.Closed, "the RST 1 GiB ahead wakes a connection whose data went unseen: it cannot be checked and is accepted (see Tracker.Quiet)"},
		{8, statetrack.Closed, "closed by that RST"},
	},
}

// TestQuietPhasesReplay replays each kernel capture twice through a
// pipeline without rules: once with every packet queued, once as the
// kernel's quiet chains would queue it (see quietChains) with the quiet
// data phase, handshake and close allowed. At the kernel's ss checkpoints
// and at the end the quiet run must infer what the full one does, and
// what the kernel says, but for the documented differences: right after
// the verdict of a quiet handshake's SYN-ACK the server is ESTABLISHED
// where the kernel is SYN_RCVD until the unseen third ACK reaches it;
// while a quiet close leaves the ACK of the first FIN unseen, the closer
// is FIN_WAIT_1 where the kernel has FIN_WAIT_2; and quietDataPhaseSpots.
func TestQuietPhasesReplay(t *testing.T) {
	type capture struct{ dir, file, ss string }
	var caps []capture
	seen := map[string]bool{}
	for _, dir := range []string{captureDir, sharedCaptureDir} {
		if _, err := os.Stat(filepath.Join(dir, "MANIFEST.tsv")); err != nil && dir == sharedCaptureDir {
			t.Logf("no shared captures: %v", err)
			continue
		}
		for _, row := range readManifestIn(t, dir) {
			if !seen[row.file] {
				seen[row.file] = true
				caps = append(caps, capture{dir, row.file, row.ss})
			}
		}
	}
	both := pipeline.QuietPhases{Handshake: true, Close: true}
	var full, dataOnly, quiet int
	for _, c := range caps {
		t.Run(strings.TrimSuffix(c.file, ".pcap"), func(t *testing.T) {
			checks, err := parseCheckpoints(c.ss)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(c.dir, c.file)
			all := replayQuiet(t, path, false, pipeline.QuietPhases{})
			d := replayQuiet(t, path, true, pipeline.QuietPhases{})
			q := replayQuiet(t, path, true, both)
			full += all.crossings
			dataOnly += d.crossings
			quiet += q.crossings
			t.Logf("crossings: %d queueing everything, %d with a quiet data phase, %d with the quiet phases too", all.crossings, d.crossings, q.crossings)
			switch {
			case q.crossings > all.crossings:
				t.Errorf("%d crossings with the quiet phases, more than %d queueing everything", q.crossings, all.crossings)
			case q.crossings >= d.crossings && !slices.Contains(noSavings, c.file):
				t.Errorf("%d crossings with the quiet phases, %d with a quiet data phase only: want fewer", q.crossings, d.crossings)
			}
			for _, ck := range checks {
				i := ck.afterPkt - 1
				a, b := all.after[i].of(ck.kernel), q.after[i].of(ck.kernel)
				documented := (q.assumed[i] && b == statetrack.Established && a == statetrack.SynRcvd) ||
					(q.closing[i] && b == statetrack.FinWait1 && a == statetrack.FinWait2)
				if spot, ok := dataPhaseSpot(c.file, ck.afterPkt); ok {
					if b != spot.tracker {
						t.Errorf("after packet %d: inferred %s with the quiet phases, want %s (%s)", ck.afterPkt, b, spot.tracker, spot.reason)
					}
					continue
				}
				if a != b && !documented {
					t.Errorf("after packet %d: kernel endpoint %s inferred %s with the quiet phases, %s queueing everything", ck.afterPkt, ck.kernel, b, a)
				}
				if b != ck.want && !documented && !blind(c.file, ck.afterPkt) {
					t.Errorf("after packet %d: kernel endpoint %s inferred %s with the quiet phases, ss says %s", ck.afterPkt, ck.kernel, b, ck.want)
				}
			}
			for k, st := range all.end {
				if q.end[k] != st {
					t.Errorf("at the end: %s inferred %v with the quiet phases, %v queueing everything", k, q.end[k], st)
				}
			}
		})
	}
	if quiet >= dataOnly || dataOnly >= full {
		t.Errorf("%d crossings in all with the quiet phases, %d with a quiet data phase only, %d queueing everything: want fewer each", quiet, dataOnly, full)
	}
	t.Logf("%d captures: %d crossings queueing everything, %d with a quiet data phase, %d with the quiet phases too", len(caps), full, dataOnly, quiet)
}

// dataPhaseSpot returns the quietDataPhaseSpots entry of the capture
// after packet n.
func dataPhaseSpot(file string, n int) (spot struct {
	afterPkt int
	tracker  statetrack.State
	reason   string
}, ok bool) {
	for _, s := range quietDataPhaseSpots[file] {
		if s.afterPkt == n {
			return s, true
		}
	}
	return spot, false
}

// blind reports whether the capture has a blind spot after packet n (see
// blindSpots): the full run's inference stands there.
func blind(file string, n int) bool {
	for _, b := range blindSpots[file] {
		if b.afterPkt == n {
			return true
		}
	}
	return false
}

// quietChains keeps, per connection, the connection mark bits that the
// kernel's chains keep for quiet connections: Q (its packets without
// SYN, FIN and RST bypass the queue), E (a FIN passed: the data phase is
// over) and F (the second FIN or an RST passed: the close is queued).
type quietChains map[[2]netip.AddrPort]uint8

const (
	markQ uint8 = 1 << iota
	markE
	markF
)

func connKey(seg *statetrack.Segment) [2]netip.AddrPort {
	a, b := seg.Src, seg.Dst
	if b.Addr().Less(a.Addr()) || (a.Addr() == b.Addr() && b.Port() < a.Port()) {
		a, b = b, a
	}
	return [2]netip.AddrPort{a, b}
}

// arrive updates the bits for seg on its way into the queue, and reports
// whether it bypasses it: a SYN clears all, the first FIN clears Q and
// sets E, a later FIN or any RST sets F and clears Q.
func (m quietChains) arrive(seg *statetrack.Segment) (bypass bool) {
	k, f := connKey(seg), seg.Flags
	bits := m[k]
	switch {
	case f&statetrack.SYN != 0:
		bits = 0
	case f&statetrack.RST != 0:
		bits = bits&^markQ | markF
	case f&statetrack.FIN != 0 && bits&markE != 0:
		bits = bits&^markQ | markF
	case f&statetrack.FIN != 0:
		bits = bits&^markQ | markE
	default:
		return bits&markQ != 0
	}
	m[k] = bits
	return false
}

// verdict applies an accepted verdict on seg, with Quiet or not, as nfq's
// filter chain does: before any FIN the verdict's Q becomes the
// connection's; after the first FIN a verdict without Q clears it, and
// only a FIN's own (F clear) sets it.
func (m quietChains) verdict(seg *statetrack.Segment, quiet bool) {
	k := connKey(seg)
	bits := m[k]
	switch {
	case bits&markE == 0 && quiet, bits&markE != 0 && quiet && seg.Flags&statetrack.FIN != 0 && bits&markF == 0:
		bits |= markQ
	case !quiet:
		bits &^= markQ
	}
	m[k] = bits
}

// lastStates keeps each connection's states as its latest event reports
// them.
type lastStates map[[2]netip.AddrPort]events.Event

func (l lastStates) Emit(e events.Event) {
	l[connKey(&statetrack.Segment{Src: e.Client, Dst: e.Server})] = e
}

// replayed is one run of a capture: the inference after each packet
// (seen or not), whether the packet's connection was in a quiet
// handshake's assumption (assumed: nothing of it seen since) or in a
// quiet close (closing: Q and E set), each connection's states at the
// end, and how many packets crossed user space.
type replayed struct {
	after            []inferred
	assumed, closing []bool
	end              map[string][2]statetrack.State
	crossings        int
}

// replayQuiet replays a capture through a pipeline without rules, every
// packet queued or (quiet) as quietChains lets them through with the
// quiet phases allowed, reporting each verdict's Quiet back as carried
// out, as the live path does.
func replayQuiet(t *testing.T, path string, quiet bool, allowed pipeline.QuietPhases) replayed {
	t.Helper()
	last := lastStates{}
	p := pipeline.New(statetrack.Config{ServerPorts: []uint16{8080}}, rules.Compile(nil), 1, last)
	if quiet {
		p.AllowQuiet()
		if got := p.AllowQuietPhases(allowed); got != allowed {
			t.Fatalf("quiet phases %+v without rules, want %+v", got, allowed)
		}
	}
	chains := quietChains{}
	var out replayed
	eachPacket(t, path, func(n int, seg *statetrack.Segment, at time.Time) {
		seen := "queued"
		if quiet && chains.arrive(seg) {
			seen = "bypassed"
		} else {
			out.crossings++
			v := p.Handle(seg, at)
			if quiet && !v.Action.Faulty() {
				chains.verdict(seg, v.Quiet)
			}
			if v.Quiet {
				p.Quieted(v.Obs.ConnID, at)
				seen += ", quiet"
			}
		}
		var in inferred
		e, ok := last[connKey(seg)]
		out.assumed = append(out.assumed, ok && e.Reason == events.QuietHandshake)
		out.closing = append(out.closing, chains[connKey(seg)]&(markQ|markE) == markQ|markE)
		if ok && e.ConnID != 0 {
			in.client, in.server = e.Client.Addr(), e.Server.Addr()
			in.states = [2]statetrack.State{e.ClientState, e.ServerState}
		}
		t.Logf("quiet %v: %2d %s>%s %-4s seq=%d ack=%d len=%d %s: client %s server %s",
			quiet, n, seg.Src, seg.Dst, seg.Flags, seg.Seq, seg.Ack, seg.Len, seen, in.states[statetrack.Client], in.states[statetrack.Server])
		out.after = append(out.after, in)
	})
	out.end = map[string][2]statetrack.State{}
	for _, e := range last {
		out.end[e.Conn()] = [2]statetrack.State{e.ClientState, e.ServerState}
	}
	return out
}
