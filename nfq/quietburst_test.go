//go:build linux

package nfq

import (
	"log/slog"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	rulespkg "github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// filterChain is the filter table's TCPCHAOS chain (iptables.go) applied
// to the connection mark ct by the verdict of a packet with mark mark,
// a FIN when fin.
func filterChain(ct uint32, fin bool, mark uint32) uint32 {
	switch {
	case ct&EndingMark == 0:
		return ct&^QuietMark | mark&QuietMark
	case fin && ct&FinalMark == 0:
		return ct&^QuietMark | mark&QuietMark
	case mark&QuietMark == 0:
		return ct &^ QuietMark
	}
	return ct
}

// Burst endings after a packet of a quietBurst case.
const (
	goOn     = iota // the burst goes on
	drained         // the burst ends, the socket read dry
	notDrain        // the burst ends, more waiting
)

// TestQuietCloseBurstKernelAgrees: after a handshake and a quiet data
// phase, the first FIN and segments of the peer's stream that crossed it,
// queued behind the FIN (mangle set E and cleared Q before queueing each),
// read in various bursts. The kernel's connection mark after the verdicts
// (filterChain) must agree with the tracker: quiet in both or in neither;
// and a segment queued after must not count as going quiet when the
// kernel is awake.
func TestQuietCloseBurstKernelAgrees(t *testing.T) {
	for _, tc := range []struct {
		name string
		ends []int // after the FIN and each crossing segment
	}{
		{"FIN and one crossing, drained", []int{goOn, drained}},
		{"FIN and two crossing, drained", []int{goOn, goOn, drained}},
		{"FIN drained; two crossing next, drained", []int{drained, goOn, drained}},
		{"FIN not drained; one crossing next, drained", []int{notDrain, drained}},
		{"FIN and one crossing, not drained; one crossing next, drained", []int{goOn, notDrain, drained}},
	} {
		t.Run(tc.name, func(t *testing.T) { quietCloseBurst(t, tc.ends) })
	}
}

func quietCloseBurst(t *testing.T, ends []int) {
	p := pipeline.New(statetrack.Config{ServerPorts: []uint16{8080}}, rulespkg.Compile(nil), 1, nil)
	p.AllowQuiet()
	p.AllowQuietPhases(pipeline.QuietPhases{Close: true})
	k := newFakeKernel()
	c := newCore(p, decode.NewParser(), newVerdictWriter(100, k), &fakeSender{}, true, nil, slog.New(slog.DiscardHandler), nil)
	var m packetMsg
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	// The server's stream, sent before the FIN reached it: crossing it.
	crossing := func(i int) tcpSpec {
		return tcpSpec{ack: true, psh: true, reply: true, seq: 300 + 100*uint32(i), ackNum: 100, payload: make([]byte, 100)}
	}
	specs := []tcpSpec{
		{syn: true, seq: 99},
		{syn: true, ack: true, reply: true, seq: 299, ackNum: 100},
		{ack: true, seq: 100, ackNum: 300},
		{fin: true, ack: true, seq: 100, ackNum: 300}, // the first FIN
	}
	for i := range len(ends) - 1 {
		specs = append(specs, crossing(i))
	}
	ends = append([]int{drained, drained, drained}, ends...)
	for i, spec := range specs {
		id := uint32(i + 1)
		k.enqueue(id)
		c.messages(packetMessage(id, 0, spec.build(t), 0), &m, now)
		if ends[i] != goOn {
			c.endBurst(ends[i] == drained)
		}
	}
	k.verdict(t, 3)
	ct := filterChain(0, false, k.marks[3]) // the third ACK: the data phase
	if ct&QuietMark == 0 {
		t.Fatal("the data phase did not go quiet")
	}
	ct = ct&^QuietMark | EndingMark // mangle on the first FIN
	for id := uint32(4); id <= uint32(len(specs)); id++ {
		k.verdict(t, id)
		ct = filterChain(ct, specs[id-1].fin, k.marks[id])
		t.Logf("packet %d: mark %#x -> connection mark %#x", id, k.marks[id], ct)
	}
	var trackerQuiet bool
	p.EachSlot(0, 1<<20, func(ci statetrack.ConnInfo) { trackerQuiet = trackerQuiet || ci.Quiet })
	if kernelQuiet := ct&QuietMark != 0; kernelQuiet != trackerQuiet {
		t.Errorf("after the bursts the kernel's connection is quiet %t, the tracker's %t", kernelQuiet, trackerQuiet)
	}
	// The next segment of the stream is queued if the kernel woke: its
	// verdict cannot make the close quiet again, nor count as going quiet.
	quieted := p.Summary().Tracker.Quieted
	id := uint32(len(specs) + 1)
	k.enqueue(id)
	c.messages(packetMessage(id, 0, crossing(len(ends)).build(t), 0), &m, now)
	c.endBurst(true)
	if ct&QuietMark == 0 && p.Summary().Tracker.Quieted != quieted {
		t.Errorf("a segment queued after the kernel woke the close counts as going quiet: Quieted %d -> %d", quieted, p.Summary().Tracker.Quieted)
	}
}
