package e2e

import (
	"context"
	"testing"

	"github.com/tcpchaos/tcpchaos/ctlclient"
)

// TestHeldReleasesWakeAQuietConnection: a connection quiet under no
// rules is woken by a reload to rules that delay every data-phase packet
// (the bypass is taken out); each of its packets from then on is held,
// and released. Back to no rules (the bypass returns), the tracker takes
// the connection for awake, so the kernel must queue its next packets:
// a release must clear the connection's QuietMark as any verdict without
// it does, or the connection bypasses the queue unknown to the tracker
// (which then expires it after IdleTimeout while it lives, and picks it
// up mid-stream with its counts at 0).
func TestHeldReleasesWakeAQuietConnection(t *testing.T) {
	t.Parallel()
	s := newSteered(t, plainConfig(t, config([]int{port}, noRules)))
	c := s.wantConnect(port, false, "no rules")
	request(t, c)
	conn := func(when string) ctlclient.Conn {
		t.Helper()
		conns, err := s.ctl.Conns(context.Background(), ctlclient.ConnFilter{})
		if err != nil || len(conns) != 1 {
			t.Fatalf("conns %s: %+v, %v; want the connection", when, conns, err)
		}
		return conns[0]
	}
	if !conn("under no rules").Quiet {
		t.Fatal("the connection is not quiet under no rules")
	}
	writeFile(t, s.config, config([]int{port}, `rules:
  - name: slow
    match: {packet: [data, ack]}
    action: {delay: 20ms}
`))
	if r, err := s.ctl.Reload(context.Background()); err != nil || r.Quiet {
		t.Fatalf("reload to delay every data-phase packet: %+v, %v; want the data phase queued", r, err)
	}
	request(t, c)
	request(t, c)
	writeFile(t, s.config, config([]int{port}, noRules))
	if r, err := s.ctl.Reload(context.Background()); err != nil || !r.Quiet {
		t.Fatalf("reload back to no rules: %+v, %v; want quiet", r, err)
	}
	before := conn("back to no rules")
	request(t, c)
	after := conn("after a request")
	t.Logf("back to no rules: quiet %v, last activity %v; after a request: quiet %v, last activity %v", before.Quiet, before.Last, after.Quiet, after.Last)
	if !before.Quiet && !after.Last.After(before.Last) {
		t.Error("the tracker takes the connection for awake, yet none of a request's packets reached it: the kernel kept the connection quiet through the held packets' releases")
	}
	s.chaos.stop()
}
