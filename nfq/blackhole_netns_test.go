package nfq_test

import (
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// startBlackhole installs the blackhole rules in the router and runs a
// queue with a pipeline deciding by rs, as `tcpchaos run` sets them up for
// a set that darkens.
func startBlackhole(t *testing.T, tp *netlabtest.Topology, rs []rules.Rule) (*running, *pipeline.Pipeline, *nfq.Interception) {
	t.Helper()
	set := rules.Compile(rs)
	if !set.Darkens() {
		t.Fatal("the rules do not darken")
	}
	p := pipeline.New(statetrack.Config{ServerPorts: []uint16{serverPort}}, set, 1, nil)
	r, in := startInstalled(t, tp, p, nfq.InstallOptions{Blackhole: true},
		nfq.Options{Queue: queueNum, Blackhole: true, CopyRange: nfq.HeaderCopyRange})
	return r, p, in
}

// TestBlackholeBulkDarkInTheKernel: a 16 MB response blackholed in both
// directions for 2 s after its 100th data segment stalls, is dropped in
// the kernel (the DROP rules count it) while hardly a packet of it is
// queued, and completes once the conntrack mark is cleared: the heal.
// (TCP sends little into a blackhole: what is in flight, then
// retransmissions backing off; none of it costs user-space work.)
func TestBlackholeBulkDarkInTheKernel(t *testing.T) {
	families(t, func(t *testing.T, v6 bool) {
		tp := netlabtest.NewTopology(t)
		const heal = 2 * time.Second
		r, p, in := startBlackhole(t, tp, []rules.Rule{{
			Name:   "vanish",
			Match:  rules.Match{Packets: []statetrack.Kind{statetrack.Data}, From: new(statetrack.Server), Nth: 100},
			Action: rules.Action{Type: rules.Blackhole, Blackhole: rules.Both, For: heal}, Probability: 1,
		}})
		const body = 16 << 20
		serve(t, tp.Server.Listen(t, "tcp", serverAddr(tp, v6)), body)
		conn := dialServer(t, tp, v6)
		start := time.Now()
		exchange(t, conn, body)
		took := time.Since(start)
		s := settled(t, r.q)
		var dark nfq.DarkStats
		if err := tp.Router.Do(func() (err error) { dark, err = in.DarkDrops(); return err }); err != nil {
			t.Fatal(err)
		}
		sum := p.Summary()
		userDark := sum.Stats.Actions[rules.Blackhole]
		t.Logf("took %v; kernel dropped %d packets (%d bytes); queue received %d, %d blackholed in user space, healed %d",
			took.Round(time.Millisecond), dark.Packets, dark.Bytes, s.Received, userDark, s.Healed)
		if took < heal {
			t.Errorf("the transfer took %v, less than the blackhole's %v", took, heal)
		}
		if s.Healed != 1 || s.HealsFailed != 0 || sum.Stats.Healed != 1 {
			t.Errorf("healed %d (%d failed) in the kernel, %d in the pipeline; want 1, 0, 1", s.Healed, s.HealsFailed, sum.Stats.Healed)
		}
		// What user space still sees of the dark connection: the
		// matching packet, and those queued before its verdict reached
		// the kernel (the backlog of one burst).
		if userDark > 16 {
			t.Errorf("%d packets of the dark connection reached user space, want a handful: the kernel drops the rest", userDark)
		}
		if dark.Packets < 3 {
			t.Errorf("the kernel dropped %d packets of the dark connection, want its retransmissions at least", dark.Packets)
		}
	})
}
