package e2e

import (
	"context"
	"testing"

	"github.com/tcpchaos/tcpchaos/ctlclient"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestQuietFloorSurvivesARefusedReload: run under A (delay the client's
// 9th data segment: quiet, the floor), reload to C (delay the server's
// 2nd: higher than A for the server, so the bypass is taken out), make a
// connection exchange 3 requests under C, reload back to A (at the floor:
// the bypass returns, as the run stands), and exchange 9 more. A's rule must delay the
// client's 9th data segment. It does not when the pipelines, deciding
// with C while the bypass was out, let the connection go quiet once past
// C (the server's 2nd) with only 3 client segments sent: its QuietMark
// stays in the kernel, and with the bypass back its client data bypasses
// the queue.
func TestQuietFloorSurvivesARefusedReload(t *testing.T) {
	t.Parallel()
	const a = `rules:
  - name: d9
    match: {packet: data, from: client, nth: 9}
    action: {delay: 150ms}
`
	const c = `rules:
  - name: s2
    match: {packet: data, from: server, nth: 2}
    action: {delay: 1ms}
`
	s := newSteered(t, plainConfig(t, config([]int{port}, a)))
	writeFile(t, s.config, config([]int{port}, c))
	if r, err := s.ctl.Reload(context.Background()); err != nil || r.Quiet {
		t.Fatalf("reload to C: %+v, %v; want the data phase queued", r, err)
	}
	conn := s.wantConnect(port, false, "under C") // request 1
	request(t, conn)
	request(t, conn)
	conns, err := s.ctl.Conns(context.Background(), ctlclient.ConnFilter{})
	if err != nil || len(conns) != 1 {
		t.Fatalf("conns under C: %+v, %v", conns, err)
	}
	t.Logf("under C, bypass out: connection quiet %v", conns[0].Quiet)
	writeFile(t, s.config, config([]int{port}, a))
	r, err := s.ctl.Reload(context.Background())
	if err != nil {
		t.Fatalf("reload back to A: %v", err)
	}
	t.Logf("back to A: quiet %v", r.Quiet)
	for range 9 {
		request(t, conn)
	}
	evs := s.chaos.stop()
	for _, e := range faults(evs) {
		if e.Rule == "d9" && e.Action == rules.Delay && e.Kind == statetrack.Data && e.From == statetrack.Client && e.Nth == 9 {
			return
		}
	}
	t.Errorf("the client's 9th data segment was not delayed by d9 (it bypassed the queue); faults:\n%s", dumpEvents(faults(evs)))
}
