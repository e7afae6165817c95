package nfq_test

import (
	"errors"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/nfq"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// These tests run quiet connections as `tcpchaos run` sets it up for a
// control-only config: a real pipeline, quiet verdicts, header copies.

// kindLog records the kinds of the packet events and the faults.
type kindLog struct {
	mu     sync.Mutex
	kinds  map[statetrack.Kind]int
	faults map[statetrack.Kind]int // by kind
}

func (l *kindLog) Emit(e events.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.IsState() {
		return
	}
	l.kinds[e.Kind]++
	if e.Rule != "" {
		l.faults[e.Kind]++
	}
}

func (l *kindLog) counts() (kinds, faults map[statetrack.Kind]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kinds, faults = map[statetrack.Kind]int{}, map[statetrack.Kind]int{}
	for k, n := range l.kinds {
		kinds[k] = n
	}
	for k, n := range l.faults {
		faults[k] = n
	}
	return kinds, faults
}

// startQuiet installs quiet connections in the router and runs a
// queue with a pipeline deciding by rs, polling as poll says.
func startQuiet(t *testing.T, tp *netlabtest.Topology, poll time.Duration, rs []rules.Rule) (*running, *pipeline.Pipeline, *kindLog) {
	t.Helper()
	set := rules.Compile(rs)
	log := &kindLog{kinds: map[statetrack.Kind]int{}, faults: map[statetrack.Kind]int{}}
	p := pipeline.New(statetrack.Config{ServerPorts: []uint16{serverPort}}, set, 1, log)
	if !p.AllowQuiet() {
		t.Fatal("the rules do not allow quiet connections")
	}
	r, _ := startInstalled(t, tp, p, nfq.InstallOptions{Quiet: true},
		nfq.Options{Queue: queueNum, Quiet: true, CopyRange: nfq.HeaderCopyRange, Poll: poll})
	return r, p, log
}

// startInstalled installs the interception of serverPort in the router
// with install and runs a queue opened with qo for h, as `tcpchaos run` does.
func startInstalled(t *testing.T, tp *netlabtest.Topology, h nfq.Handler, install nfq.InstallOptions, qo nfq.Options) (*running, *nfq.Interception) {
	t.Helper()
	return startInstalledIn(t, tp.Router, nfq.Forward, h, install, qo)
}

// startInstalledIn is startInstalled in namespace ns and the given mode.
func startInstalledIn(t *testing.T, ns *netlabtest.NS, mode nfq.Mode, h nfq.Handler, install nfq.InstallOptions, qo nfq.Options) (*running, *nfq.Interception) {
	t.Helper()
	var in *nfq.Interception
	err := ns.Do(func() (err error) {
		in, err = nfq.Install(nfq.Intercept{Mode: mode, Ports: []uint16{serverPort}, Queue: queueNum, Queues: 1}, install)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var q *nfq.Queue
	err = ns.Do(func() (err error) {
		q, err = nfq.Open(qo, h)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return startOpened(t, q), in
}

var loseFinalAck = rules.Rule{
	Name:        "lose-final-ack",
	Match:       rules.Match{Packets: []statetrack.Kind{statetrack.FinalAck}, Nth: 1},
	Action:      rules.Action{Type: rules.Drop},
	Probability: 1,
}

// TestQuietBulk: a 64 MB response under a control-only config crosses
// the router while only its handshake and its close are queued; the
// final-ack rule still fires.
func TestQuietBulk(t *testing.T) {
	tp := netlabtest.NewTopology(t)
	r, p, log := startQuiet(t, tp, -1, []rules.Rule{loseFinalAck}) // blocking reads only
	const body = 64 << 20
	ln := tp.Server.Listen(t, "tcp", serverAddr(tp, false))
	serve(t, ln, body)
	conn := dialServer(t, tp, false)
	exchange(t, conn, body)
	conn.Close()
	s := settled(t, r.q)
	if s.Received > 40 {
		t.Errorf("queue received %d packets of a 64 MB transfer, want a handful (handshake, close)", s.Received)
	}
	t.Logf("64 MB transfer: %d packets queued", s.Received)
	kinds, faults := log.counts()
	for _, k := range []statetrack.Kind{statetrack.Syn, statetrack.SynAck, statetrack.HandshakeAck, statetrack.Fin, statetrack.FinalAck} {
		if kinds[k] == 0 {
			t.Errorf("no %s seen (kinds %v)", k, kinds)
		}
	}
	if faults[statetrack.FinalAck] != 1 {
		t.Errorf("final-ack dropped %d times, want 1 (faults %v)", faults[statetrack.FinalAck], faults)
	}
	if sum := p.Summary(); sum.Tracker.Quieted == 0 || sum.Tracker.Midstream != 0 {
		t.Errorf("tracker: %d quiet, %d midstream; want the connection quiet, no pickup", sum.Tracker.Quieted, sum.Tracker.Midstream)
	}
	if s.DecodeFailures+s.VerdictErrors+s.ReadErrors != 0 {
		t.Errorf("queue errors: %+v", s)
	}
}

// TestQuietShortConnectionsNoReset: 2000 short connections (connect,
// one byte each way, close) with their data phase bypassing the queue see
// no reset and no reordering symptom: the kernel clears the quiet mark on
// a FIN before queueing it, so nothing after it overtakes it.
func TestQuietShortConnectionsNoReset(t *testing.T) {
	tp := netlabtest.NewTopology(t)
	r, p, _ := startQuiet(t, tp, 0, []rules.Rule{{
		Name:        "never",
		Match:       rules.Match{Packets: []statetrack.Kind{statetrack.Syn}, Nth: 200},
		Action:      rules.Action{Type: rules.Drop},
		Probability: 1,
	}})
	addr := serverAddr(tp, false)
	serveEchoByte(t, tp, addr, 10*time.Second)
	before := peerNstat(t, tp)
	const conns, workers = 2000, 4
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		resets int
		errs   []error
	)
	for range workers {
		wg.Go(func() {
			for range conns / workers {
				err := oneShort(tp, addr)
				if err == nil {
					continue
				}
				mu.Lock()
				if errors.Is(err, syscall.ECONNRESET) {
					resets++
				} else if len(errs) < 5 {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	s := settled(t, r.q)
	if resets != 0 || len(errs) != 0 {
		t.Errorf("%d ECONNRESET; other errors %v", resets, errs)
	}
	noResets(t, before)
	sum := p.Summary()
	if sum.Tracker.Quieted == 0 {
		t.Error("no connection went quiet")
	}
	if sum.Tracker.Midstream != 0 {
		t.Errorf("%d mid-stream pickups", sum.Tracker.Midstream)
	}
	t.Logf("%d connections: %d packets queued (%d per connection), %d quiet transitions",
		conns, s.Received, s.Received/conns, sum.Tracker.Quieted)
}

// oneShort runs one short connection from the client.
func oneShort(tp *netlabtest.Topology, addr string) error {
	c, err := tp.Client.Dial("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if _, err := c.Read(b[:]); err != io.EOF {
		return errors.Join(errors.New("want EOF after the reply"), err)
	}
	return nil
}
