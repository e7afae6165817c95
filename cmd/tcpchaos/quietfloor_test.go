//go:build linux

package main

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

// TestRevertAfterRefusedSetKeepsNthConnectionsQueued: under set A (delay
// the client's 9th data segment) connections went quiet (the floor). A
// reload to set C (delay the server's 12th) is refused the bypass
// (mayQuiet false: server data 12 > 0), yet the pipelines decide with C
// and still propose Quiet, which nfq writes as QuietMark (its quiet flag
// is the install's): a connection past C but with only 3 client data
// segments gets Q in the kernel. A reload back to A passes mayQuiet (A is
// the floor) and puts the bypass back: that connection's client data
// segments 4.. bypass the queue, and A's rule never sees its 9th.
func TestRevertAfterRefusedSetKeepsNthConnectionsQueued(t *testing.T) {
	client, server := statetrack.Client, statetrack.Server
	delayNth := func(from *statetrack.Side, n uint32) *rules.Set {
		return rules.Compile([]rules.Rule{{Name: "d", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Data}, From: from, Nth: n},
			Action: rules.Action{Type: rules.Delay, Delay: time.Millisecond}, Probability: 1}})
	}
	a, c := delayNth(&client, 9), delayNth(&server, 12)
	s := &steering{status: io.Discard}
	floor, _ := a.QuietAfter()
	s.quietFloor = &floor // attach under A, quiet
	if s.mayQuiet(c) {
		t.Fatal("C (server data 12) let go quiet after A (client data 9)")
	}
	p := pipeline.New(statetrack.Config{ServerPorts: []uint16{8080}}, a, 1, nil)
	if !p.AllowQuiet() {
		t.Fatal("A does not let connections go quiet")
	}
	p.Switch(c) // apply switches every pipeline to C whatever mayQuiet said

	cl, sv := netip.MustParseAddrPort("198.18.1.2:40000"), netip.MustParseAddrPort("198.19.2.2:8080")
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	cseq, sseq := seqnum.Value(101), seqnum.Value(301)
	send := func(fromClient bool, flags statetrack.Flags, n uint32) rules.Verdict {
		sg := &statetrack.Segment{Src: cl, Dst: sv, Seq: cseq, Ack: sseq, Flags: flags, Len: n}
		if !fromClient {
			sg = &statetrack.Segment{Src: sv, Dst: cl, Seq: sseq, Ack: cseq, Flags: flags, Len: n}
		}
		now = now.Add(time.Millisecond)
		v := p.Handle(sg, now)
		if v.Action == rules.Delay {
			p.Deliver(&v, now)
		}
		if fromClient {
			cseq = cseq.Add(seqnum.Size(n))
		} else {
			sseq = sseq.Add(seqnum.Size(n))
		}
		return v
	}
	p.Handle(&statetrack.Segment{Src: cl, Dst: sv, Seq: 100, Flags: statetrack.SYN}, now)
	p.Handle(&statetrack.Segment{Src: sv, Dst: cl, Seq: 300, Ack: 101, Flags: statetrack.SYN | statetrack.ACK}, now)
	send(true, statetrack.ACK, 0)
	for range 3 {
		send(true, statetrack.ACK|statetrack.PSH, 100)
	}
	var quiet *rules.Verdict
	for range 13 {
		if v := send(false, statetrack.ACK|statetrack.PSH, 100); v.Quiet {
			quiet = &v
			break
		}
	}
	if quiet == nil {
		t.Skip("no verdict under C proposed Quiet")
	}
	p.Quieted(quiet.Obs.ConnID, now) // nfq wrote QuietMark: the bypass is off, the mark stays

	// Revert to A.
	if s.mayQuiet(a) {
		t.Errorf("back to A the bypass returns while a connection quiet in the kernel under C has sent 3 client data segments, A's rule acts on the 9th")
	}
}
