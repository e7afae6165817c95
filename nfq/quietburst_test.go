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

// TestQuietCloseBurstKernelAgrees: the first FIN and two segments of the
// peer's stream that crossed it, queued behind the FIN (mangle set E and
// cleared Q before queueing each), the two read in one burst read dry, the
// FIN's own or the next. The kernel's connection mark
// after the verdicts must agree with the tracker: quiet in both or in
// neither.
func TestQuietCloseBurstKernelAgrees(t *testing.T) {
	for _, finAlone := range []bool{false, true} {
		t.Run(map[bool]string{false: "FIN's burst", true: "next burst"}[finAlone], func(t *testing.T) {
			quietCloseBurstKernelAgrees(t, finAlone)
		})
	}
}

func quietCloseBurstKernelAgrees(t *testing.T, finAlone bool) {
	p := pipeline.New(statetrack.Config{ServerPorts: []uint16{8080}}, rulespkg.Compile(nil), 1, nil)
	p.AllowQuiet()
	p.AllowQuietPhases(pipeline.QuietPhases{Close: true})
	k := newFakeKernel()
	c := newCore(p, decode.NewParser(), newVerdictWriter(100, k), &fakeSender{}, true, nil, slog.New(slog.DiscardHandler), nil)
	var m packetMsg
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	specs := []tcpSpec{
		{syn: true, seq: 99},
		{syn: true, ack: true, reply: true, seq: 299, ackNum: 100},
		{ack: true, seq: 100, ackNum: 300},
		{fin: true, ack: true, seq: 100, ackNum: 300}, // the first FIN
		// The server's stream, sent before the FIN reached it: crossing it.
		{ack: true, psh: true, reply: true, seq: 300, ackNum: 100, payload: make([]byte, 100)},
		{ack: true, psh: true, reply: true, seq: 400, ackNum: 100, payload: make([]byte, 100)},
	}
	for i, spec := range specs {
		id := uint32(i + 1)
		k.enqueue(id)
		c.messages(packetMessage(id, 0, spec.build(t), 0), &m, now)
		if id <= 3 || id == uint32(len(specs)) || id == 4 && finAlone {
			c.endBurst(true)
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
		t.Errorf("after the burst the kernel's connection is quiet %t, the tracker's %t", kernelQuiet, trackerQuiet)
	}
	// The next segment of the stream is queued if the kernel woke: its
	// verdict cannot make the close quiet again, nor count as going quiet.
	quieted := p.Summary().Tracker.Quieted
	id := uint32(len(specs) + 1)
	k.enqueue(id)
	c.messages(packetMessage(id, 0, tcpSpec{ack: true, psh: true, reply: true, seq: 500, ackNum: 100, payload: make([]byte, 100)}.build(t), 0), &m, now)
	c.endBurst(true)
	if ct&QuietMark == 0 && p.Summary().Tracker.Quieted != quieted {
		t.Errorf("a segment queued after the kernel woke the close counts as going quiet: Quieted %d -> %d", quieted, p.Summary().Tracker.Quieted)
	}
}
