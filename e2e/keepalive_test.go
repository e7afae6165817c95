package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// The client's keepalive options in TestKeepaliveAckLost.
var keepalive = net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 3}

// TestKeepaliveAckLost: configs/keepalive-ack-lost.yaml with the limit
// set to N, a client with SO_KEEPALIVE and TCP_KEEPIDLE 1 s,
// TCP_KEEPINTVL 1 s, TCP_KEEPCNT 3, after one request. The tracker
// classifies the client's probes (one byte below its next sequence
// number, no payload, on the wire) as keepalive and the server's answers
// as keepalive-ack; the first N answers are dropped, each followed by the
// next probe about TCP_KEEPINTVL later.
//
//   - N = 2 < TCP_KEEPCNT: the third probe is answered, the probing goes
//     on and a later request works.
//   - N = 3 = TCP_KEEPCNT: the client gives up at TCP_KEEPIDLE +
//     TCP_KEEPCNT × TCP_KEEPINTVL (4 s) after its last exchange: its read
//     fails with ETIMEDOUT and its RST makes the server's fail with
//     ECONNRESET. The config's "probed-again" item fails for the last lost
//     answer: an RST, not a probe, follows it.
func TestKeepaliveAckLost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		lost int
	}{
		{"survives", keepalive.Count - 1},
		{"dies", keepalive.Count},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newScenarioWith(t, configVariant(t, "keepalive-ack-lost.yaml", "limit: 8", fmt.Sprint("limit: ", tc.lost)), false)
			serverErr := s.listenUntilError()
			c, _ := s.dial()
			if err := c.(*net.TCPConn).SetKeepAliveConfig(keepalive); err != nil {
				t.Fatalf("set keepalive: %v", err)
			}
			request(t, c)
			if tc.lost < keepalive.Count {
				keepaliveSurvives(s, c, tc.lost)
			} else {
				keepaliveDies(s, c, serverErr)
			}
			atClient, atServer, evs := s.finish()
			checkKeepalive(s, atClient, atServer, evs, tc.lost)
		})
	}
}

// keepaliveSurvives waits for the probe after the lost answers and for
// its answer to reach the client, then sends a request that must work,
// and closes.
func keepaliveSurvives(s *scenario, c net.Conn, lost int) {
	s.t.Helper()
	var answered netlabtest.Packet
	waitFor(s.t, s.toServer, "the probe after the lost answers", func(pkts []netlabtest.Packet) bool {
		probes := pick(pkts, from(s.client), isPureAck, isProbe(pkts, s.client))
		if len(probes) > lost {
			answered = probes[lost]
		}
		return len(probes) > lost
	})
	waitFor(s.t, s.toClient, "the answer to it", atLeast(1, from(s.server), isPureAck, after(answered.Time)))
	request(s.t, c)
	c.Close()
	s.waitClosed()
}

// isProbe matches a keepalive probe of sender: a segment one below the
// end of its first payload in pkts.
func isProbe(pkts []netlabtest.Packet, sender netip.Addr) pred {
	data := pick(pkts, from(sender), isData)
	return func(p netlabtest.Packet) bool {
		return len(data) > 0 && p.Len == 0 && uint32(p.Seq) == uint32(data[0].Seq)+data[0].Len-1
	}
}

// after matches a packet later than at.
func after(at time.Time) pred { return func(p netlabtest.Packet) bool { return p.Time.After(at) } }

// keepaliveDies waits for the client's read to fail with ETIMEDOUT,
// compares the give-up time with the one the options predict, and checks
// that the server was reset.
func keepaliveDies(s *scenario, c net.Conn, serverErr <-chan error) {
	t := s.t
	t.Helper()
	start := time.Now()
	_, err := bufio.NewReader(c).ReadString('\n')
	took := time.Since(start)
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("client read: %v, want ETIMEDOUT", err)
	}
	predicted := keepalive.Idle + time.Duration(keepalive.Count)*keepalive.Interval
	t.Logf("keepalive give-up: measured %v after the last exchange, predicted %v (TCP_KEEPIDLE + TCP_KEEPCNT × TCP_KEEPINTVL)", took.Round(time.Millisecond), predicted)
	within(t, "keepalive give-up", took, predicted-predicted/8, 2*predicted)
	wantServerReset(t, serverErr, "after the client's RST")
	waitFor(t, s.toServer, "the client's RST", atLeast(1, from(s.client), isRst))
	for _, ns := range []*netlabtest.NS{s.tp.Client, s.tp.Server} {
		if got := ns.SocketStates(t, port); got[statetrack.Established] != 0 {
			t.Errorf("%s: sockets %v after the give-up, want none established", ns.Name, got)
		}
	}
	s.failing = map[string]bool{"probed-again": true}
	s.chaos.wantExit = 3
}

// checkKeepalive checks the wire and the events of the probing: the
// client's probes are pure ACKs one below its next sequence number, each
// answered by the server with a pure ACK, the first lost of them dropped
// at the router; the events classify probes and answers and show the
// rule dropping the first lost answers.
func checkKeepalive(s *scenario, atClient, atServer []netlabtest.Packet, evs []events.Event, lost int) {
	t := s.t
	t.Helper()
	probes := pick(atServer, from(s.client), isPureAck, isProbe(atServer, s.client))
	if len(probes) < keepalive.Count {
		t.Fatalf("%d probes on the server side, want at least %d", len(probes), keepalive.Count)
	}
	for i := 1; i < keepalive.Count; i++ {
		within(t, fmt.Sprintf("probe %d after probe %d", i+1, i), probes[i].Time.Sub(probes[i-1].Time), keepalive.Interval*3/4, 3*keepalive.Interval)
	}
	answers := func(pkts []netlabtest.Packet) int {
		return count(pkts, from(s.server), isPureAck, after(probes[0].Time))
	}
	if up, down := answers(atServer), answers(atClient); up-down != lost {
		t.Errorf("answers: %d on the server side, %d on the client side, want %d lost", up, down, lost)
	}

	ka, acks := packetEvents(evs, statetrack.Keepalive, statetrack.Client), packetEvents(evs, statetrack.KeepaliveAck, statetrack.Server)
	if len(ka) != len(probes) {
		t.Errorf("%d keepalive events from the client, %d probes on the wire", len(ka), len(probes))
	}
	if len(acks) < lost {
		t.Fatalf("%d keepalive-ack events from the server, want at least %d", len(acks), lost)
	}
	for i, e := range acks {
		dropped := e.Rule == "lose-keepalive-answers" && e.Action == rules.Drop
		if e.Nth != uint32(i+1) || dropped != (i < lost) {
			t.Errorf("keepalive-ack %d: nth %d, rule %q %s; want nth %d, dropped %v", i+1, e.Nth, e.Rule, e.Action, i+1, i < lost)
		}
	}
	for _, e := range ka {
		if e.Retransmission || e.ClientState != statetrack.Established || e.ServerState != statetrack.Established {
			t.Errorf("keepalive event %+v: want no retransmission, both ESTABLISHED", e)
		}
	}
}

// TestKeepaliveProbeReset: configs/keepalive-ack-lost.yaml with its rule
// turned into {reset: server} on the client's first keepalive probe
// (limit 1). A probe lies one below its receiver's rcv_nxt, before the
// window, where Linux drops an RST unseen: the RST sent in its stead
// carries the probe's sequence number plus one, which the server takes
// (its read fails with ECONNRESET, the tracker closes it); the client's
// next probe then draws the server kernel's RST and its read fails with
// ECONNRESET too.
func TestKeepaliveProbeReset(t *testing.T) {
	t.Parallel()
	s := newScenarioWith(t, configVariant(t, "keepalive-ack-lost.yaml",
		"match: {packet: keepalive-ack}\n    action: drop\n    limit: 8",
		"match: {packet: keepalive}\n    action: {reset: server}\n    limit: 1"), false)
	serverErr := s.listenUntilError()
	c, _ := s.dial()
	if err := c.(*net.TCPConn).SetKeepAliveConfig(keepalive); err != nil {
		t.Fatalf("set keepalive: %v", err)
	}
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	request(t, c)
	wantServerReset(t, serverErr, "after the reset of the probe")
	if _, err := bufio.NewReader(c).ReadString('\n'); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after its next probe: %v, want ECONNRESET", err)
	}
	c.Close()
	waitFor(t, s.toClient, "the server's RST", atLeast(1, from(s.server), isRst))
	atClient, atServer, evs := s.finish()

	probes := pick(atClient, from(s.client), isPureAck, isProbe(atClient, s.client))
	rsts := pick(atServer, from(s.client), isRst)
	if len(probes) < 2 || len(rsts) == 0 {
		t.Fatalf("%d probes from the client, %d RSTs to the server; want at least 2 and 1", len(probes), len(rsts))
	}
	if rsts[0].Seq != probes[0].Seq+1 {
		t.Errorf("RST to the server seq %d, want the probe's %d plus one", rsts[0].Seq, probes[0].Seq)
	}
	f := wantFault(t, evs, "lose-keepalive-answers", rules.Reset, statetrack.Keepalive, statetrack.Client, 1)
	for _, e := range evs {
		if e.Injected && e.Time.Equal(f.Time) && e.ServerState != statetrack.Closed {
			t.Errorf("injected RST event %+v: want the server CLOSED", e)
		}
	}
}
