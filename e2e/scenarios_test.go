package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// TestLostFirstSyn: configs/lost-first-syn.yaml. The client's SYN crosses
// the client side twice (same sequence number, the retransmission after
// the 1 s initial RTO) and the server side once; connect() takes about
// 1 s; the events show syn nth 1 dropped by the rule and nth 2 passed.
func TestLostFirstSyn(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		s := newScenario(t, "lost-first-syn.yaml", v6)
		took, atClient, atServer, evs := s.pingPongOnce()

		within(t, "connect()", took, 900*time.Millisecond, 3*time.Second)
		gaps := sameSegment(t, "client SYNs upstream", pick(atClient, from(s.client), isSyn), 2, atClient)
		if len(gaps) == 1 {
			within(t, "SYN retransmission gap", gaps[0], 900*time.Millisecond, 3*time.Second)
		}
		sameSegment(t, "client SYNs downstream", pick(atServer, from(s.client), isSyn), 1, atServer)

		f := wantFault(t, evs, "lose-first-syn", rules.Drop, statetrack.Syn, statetrack.Client, 1)
		if syns := pick(atClient, from(s.client), isSyn); len(syns) > 0 && f.Seq != uint32(syns[0].Seq) {
			t.Errorf("dropped syn seq %d, want %d", f.Seq, uint32(syns[0].Seq))
		}
		wantLostOnce(t, evs, statetrack.Syn, statetrack.Client)
	})
}

// TestSlowSynAck: configs/slow-syn-ack.yaml. Each SYN-ACK crosses the
// server side at once and the client side 300 ms (±20 ms) later, so
// connect() takes at least that long; while the second connection's
// SYN-ACK is held, the first connection's request and response overtake
// it (no head-of-line blocking). The events show both SYN-ACKs delayed by
// the rule and their release.
func TestSlowSynAck(t *testing.T) {
	t.Parallel()
	s := newScenario(t, "slow-syn-ack.yaml", false)
	s.listen(pingPong(0))
	c1, took := s.dial()
	within(t, "connect()", took, 270*time.Millisecond, time.Second)

	dialed := make(chan time.Duration, 1)
	go func() {
		c2, took := s.dial()
		request(t, c2)
		c2.Close()
		dialed <- took
	}()
	waitFor(t, s.toServer, "the second SYN-ACK", atLeast(2, from(s.server), isSynAck))
	request(t, c1)
	c1.Close()
	within(t, "second connect()", <-dialed, 270*time.Millisecond, time.Second)
	waitFor(t, s.toClient, "both closes", atLeast(2, from(s.server), isFin))
	atClient, atServer, evs := s.finish()

	// Server to client: the server side is upstream of the hold.
	held, released := pick(atServer, from(s.server), isSynAck), pick(atClient, from(s.server), isSynAck)
	if len(held) != 2 || len(released) != 2 {
		t.Fatalf("SYN-ACKs: %d on the server side, %d on the client side, want 2 and 2", len(held), len(released))
	}
	for i := range held {
		if held[i].Seq != released[i].Seq {
			t.Errorf("SYN-ACK %d: seq %d on the server side, %d on the client side", i+1, uint32(held[i].Seq), uint32(released[i].Seq))
		}
		within(t, fmt.Sprintf("SYN-ACK %d hold", i+1), released[i].Time.Sub(held[i].Time), 270*time.Millisecond, time.Second)
	}
	// The first connection's response crosses the router while the second
	// SYN-ACK is held: after it on the server side, before it on the
	// client side.
	firstConn := func(p netlabtest.Packet) bool { return p.Len > 0 && p.Dst == released[0].Dst }
	pongIn, pongOut := pick(atServer, from(s.server), firstConn), pick(atClient, from(s.server), firstConn)
	if len(pongIn) != 1 || len(pongOut) != 1 {
		t.Fatalf("first connection's response: %d packets on the server side, %d on the client side, want 1 and 1", len(pongIn), len(pongOut))
	}
	if !pongIn[0].Time.After(held[1].Time) || !pongOut[0].Time.Before(released[1].Time) {
		t.Errorf("the first connection's response (server side %s, client side %s) did not overtake the held SYN-ACK of the second (%s, %s)",
			pongIn[0].Time.Format(stamp), pongOut[0].Time.Format(stamp), held[1].Time.Format(stamp), released[1].Time.Format(stamp))
	}

	for _, f := range wantFaults(t, evs, 2, "slow-syn-ack", rules.Delay, statetrack.SynAck, statetrack.Server, 1) {
		if d := f.Delay; d < 280*time.Millisecond || d > 320*time.Millisecond {
			t.Errorf("delay %q, want 300ms ± 20ms", f.Delay)
		}
	}
	if n := countReason(evs, events.Released); n != 2 {
		t.Errorf("%d state events for a released packet, want 2", n)
	}
}

// countReason counts the state events with reason.
func countReason(evs []events.Event, reason events.Reason) int {
	n := 0
	for _, e := range evs {
		if e.IsState() && e.Reason == reason {
			n++
		}
	}
	return n
}

// TestLostThirdAck: configs/lost-third-ack.yaml, with a server that speaks
// first. The client's handshake ACK crosses the client side twice and the
// server side once; the server sends its SYN-ACK twice about 1 s apart and
// ss shows its socket in SYN-RECV meanwhile; the greeting reaches the
// client about 1 s after connect() returned. Events: handshake-ack nth 1
// dropped, nth 2 passed.
func TestLostThirdAck(t *testing.T) {
	t.Parallel()
	s := newScenario(t, "lost-third-ack.yaml", false)
	s.listen(func(c net.Conn) error {
		if _, err := io.WriteString(c, "hello\n"); err != nil {
			return fmt.Errorf("write greeting: %w", err)
		}
		_, err := io.Copy(io.Discard, c)
		return err
	})
	c, _ := s.dial()
	start := time.Now()
	if !waitState(t, s.tp.Server, statetrack.SynRcvd, 900*time.Millisecond) {
		t.Errorf("ss never showed the server socket in SYN-RECV:\n%s", s.tp.Server.SS(t))
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("read greeting: %q, %v", line, err)
	}
	within(t, "greeting delay", time.Since(start), 800*time.Millisecond, 3*time.Second)
	c.Close()
	s.waitClosed()
	atClient, atServer, evs := s.finish()

	for _, side := range []struct {
		name string
		pkts []netlabtest.Packet
	}{{"client side", atClient}, {"server side", atServer}} {
		gaps := sameSegment(t, "SYN-ACKs on the "+side.name, pick(side.pkts, from(s.server), isSynAck), 2, side.pkts)
		if len(gaps) == 1 {
			within(t, "SYN-ACK retransmission gap", gaps[0], 900*time.Millisecond, 3*time.Second)
		}
	}
	synAck := pick(atClient, from(s.server), isSynAck)
	if len(synAck) > 0 {
		handshakeAck := []pred{from(s.client), isPureAck, ackOf(uint32(synAck[0].Seq) + 1)}
		// Before the client's data or FIN: only ACKs of the SYN-ACK.
		if n := count(atClient, handshakeAck...); n < 2 {
			t.Errorf("client side: %d ACKs of the SYN-ACK from the client, want at least 2", n)
		}
		if n := count(atServer, handshakeAck...); n != count(atClient, handshakeAck...)-1 {
			t.Errorf("server side: %d ACKs of the SYN-ACK, want one less than the client side's %d", n, count(atClient, handshakeAck...))
		}
	}
	wantFault(t, evs, "lose-third-ack", rules.Drop, statetrack.HandshakeAck, statetrack.Client, 1)
	wantLostOnce(t, evs, statetrack.HandshakeAck, statetrack.Client)
}

// TestLostFin: configs/lost-fin.yaml, the client closing first. The
// client's FIN crosses the client side twice (same sequence number, the
// retransmission after the RTO) and the server side once. Events: fin
// closer active nth 1 dropped, nth 2 passed.
func TestLostFin(t *testing.T) {
	t.Parallel()
	s := newScenario(t, "lost-fin.yaml", false)
	s.listen(pingPong(0))
	c, _ := s.dial()
	request(t, c)
	c.Close()
	s.waitClosed()
	atClient, atServer, evs := s.finish()

	gaps := sameSegment(t, "client FINs upstream", pick(atClient, from(s.client), isFin), 2, atClient)
	if len(gaps) == 1 {
		within(t, "FIN retransmission gap", gaps[0], 150*time.Millisecond, 3*time.Second)
	}
	sameSegment(t, "client FINs downstream", pick(atServer, from(s.client), isFin), 1, atServer)
	f := wantFault(t, evs, "lose-active-fin", rules.Drop, statetrack.Fin, statetrack.Client, 1)
	if f.Closer != statetrack.Active {
		t.Errorf("dropped fin closer %q, want active", f.Closer)
	}
	wantLostOnce(t, evs, statetrack.Fin, statetrack.Client)
}

// TestLostFinalAck: configs/lost-final-ack.yaml, the client closing
// first. The server sits in LAST-ACK (ss) and sends its FIN twice, about
// 200 ms apart, on both sides; the client's final ACK crosses the client
// side twice (the second answers the retransmitted FIN from TIME_WAIT) and
// the server side once. Events: final-ack nth 1 dropped, nth 2 passed.
func TestLostFinalAck(t *testing.T) {
	t.Parallel()
	s := newScenario(t, "lost-final-ack.yaml", false)
	s.listen(pingPong(0))
	c, _ := s.dial()
	request(t, c)
	c.Close()
	if !waitState(t, s.tp.Server, statetrack.LastAck, time.Second) {
		t.Errorf("ss never showed the server socket in LAST-ACK:\n%s", s.tp.Server.SS(t))
	}
	s.waitClosed()
	waitFor(t, s.toServer, "the server's FIN retransmission", atLeast(2, from(s.server), isFin))
	if fins := pick(s.toServer.Packets(), from(s.server), isFin); len(fins) > 0 {
		// The client answers the retransmission a moment later.
		waitFor(t, s.toClient, "the second final ACK", atLeast(2, from(s.client), isPureAck, ackOf(uint32(fins[0].Seq)+1)))
	}
	atClient, atServer, evs := s.finish()

	for _, side := range []struct {
		name string
		pkts []netlabtest.Packet
	}{{"client side", atClient}, {"server side", atServer}} {
		gaps := sameSegment(t, "server FINs on the "+side.name, pick(side.pkts, from(s.server), isFin), 2, side.pkts)
		if len(gaps) == 1 {
			within(t, "FIN retransmission gap", gaps[0], 150*time.Millisecond, 3*time.Second)
		}
	}
	if fins := pick(atServer, from(s.server), isFin); len(fins) > 0 {
		finalAck := []pred{from(s.client), isPureAck, ackOf(uint32(fins[0].Seq) + 1)}
		if n := count(atClient, finalAck...); n != 2 {
			t.Errorf("client side: %d final ACKs, want 2", n)
		}
		if n := count(atServer, finalAck...); n != 1 {
			t.Errorf("server side: %d final ACKs, want 1", n)
		}
	}
	wantFault(t, evs, "lose-final-ack-once", rules.Drop, statetrack.FinalAck, statetrack.Client, 1)
	wantLostOnce(t, evs, statetrack.FinalAck, statetrack.Client)
}

// TestLostPassiveFin: configs/lost-passive-fin.yaml, the client closing
// first. The server's FIN (CLOSE_WAIT -> LAST_ACK) crosses the server side
// twice and the client side once, and ss shows the server in LAST-ACK
// meanwhile. Events: fin closer passive nth 1 dropped, nth 2 passed.
//
// What the client does meanwhile depends on when the server closes. A
// server closing at once sends its FIN with the ACK of the client's FIN
// (Linux delays that ACK in CLOSE_WAIT, expecting the close), so losing
// the FIN loses that ACK too: the client stays in FIN-WAIT-1 and
// retransmits its own FIN, unless the server's retransmission comes
// first: both timers run about the same minimum RTO (200 ms), started
// a fraction of a millisecond apart, so the server's FIN may reach the
// client just before the client's timer fires. A server closing later
// than the delayed ACK has acknowledged the client's FIN alone: the
// client waits in FIN-WAIT-2.
// finRace bounds how soon after the client's FIN the server's FIN
// retransmission may reach the client and leave the client's own
// retransmission unsent (TestLostPassiveFin): the minimum RTO and some
// jitter. Later than that, a client that sent its FIN once is wrong.
const finRace = 300 * time.Millisecond

func TestLostPassiveFin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		linger      time.Duration
		clientState statetrack.State
		clientFins  int // on each side
	}{
		{"close-at-eof", 0, statetrack.FinWait1, 2},
		{"close-later", 500 * time.Millisecond, statetrack.FinWait2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, "lost-passive-fin.yaml", false)
			s.listen(pingPong(tc.linger))
			c, _ := s.dial()
			request(t, c)
			c.Close()
			if !waitState(t, s.tp.Server, statetrack.LastAck, tc.linger+time.Second) {
				t.Errorf("ss never showed the server socket in LAST-ACK:\n%s", s.tp.Server.SS(t))
			}
			// Still there once the server is in LAST-ACK, unless the
			// server's FIN retransmission (200 ms or more after the lost
			// one) already reached it: on a loaded box ss may look late.
			if got := s.tp.Client.SocketStates(t, port); got[tc.clientState] != 1 {
				if got[statetrack.TimeWait] != 1 {
					t.Errorf("client sockets %v, want one in %s", got, tc.clientState)
				} else {
					t.Logf("client already in TIME_WAIT: the server's FIN retransmission came before ss looked")
				}
			}
			s.waitClosed()
			atClient, atServer, evs := s.finish()

			gaps := sameSegment(t, "server FINs upstream", pick(atServer, from(s.server), isFin), 2, atServer)
			if len(gaps) == 1 {
				within(t, "FIN retransmission gap", gaps[0], 150*time.Millisecond, 3*time.Second)
			}
			serverFins := pick(atClient, from(s.server), isFin)
			sameSegment(t, "server FINs downstream", serverFins, 1, atClient)
			clientFins := tc.clientFins
			if cf := pick(atClient, from(s.client), isFin); clientFins == 2 && len(cf) == 1 && len(serverFins) == 1 &&
				serverFins[0].Time.Sub(cf[0].Time) < finRace {
				t.Logf("the server's FIN retransmission reached the client %v after its FIN, before its own retransmission",
					serverFins[0].Time.Sub(cf[0].Time).Round(time.Millisecond))
				clientFins = 1
			}
			sameSegment(t, "client FINs on the client side", pick(atClient, from(s.client), isFin), clientFins, atClient)
			sameSegment(t, "client FINs on the server side", pick(atServer, from(s.client), isFin), clientFins, atServer)
			f := wantFault(t, evs, "lose-passive-fin", rules.Drop, statetrack.Fin, statetrack.Server, 1)
			if f.Closer != statetrack.Passive {
				t.Errorf("dropped fin closer %q, want passive", f.Closer)
			}
			wantLostOnce(t, evs, statetrack.Fin, statetrack.Server)
		})
	}
}

// TestDuplicatedFin: configs/duplicated-fin.yaml, the client closing
// first, in IPv4 and IPv6. Each FIN crosses the router once upstream and
// twice downstream, the copy about 200 ms after the original with the
// same sequence number and a valid checksum. The copy of the server's FIN
// reaches the client in TIME_WAIT, which sends its final ACK again. The
// server, closed by then, answers that ACK with an RST, which ends the
// client's TIME_WAIT early (net.ipv4.tcp_rfc1337 = 0, the default).
//
// The copy of the client's FIN meets either a server still in CLOSE_WAIT
// (close-later), which treats it as a duplicate and ACKs it again, or a
// server already closed (close-at-eof), whose RST the client in TIME_WAIT
// ignores (its sequence number is one short of the window).
func TestDuplicatedFin(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		for _, tc := range []struct {
			name   string
			linger time.Duration
		}{
			{"close-at-eof", 0},
			{"close-later", 500 * time.Millisecond},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s := newScenario(t, "duplicated-fin.yaml", v6)
				s.listen(pingPong(tc.linger))
				c, _ := s.dial()
				request(t, c)
				c.Close()
				waitFor(t, s.toServer, "the copy of the client's FIN", atLeast(2, from(s.client), isFin))
				waitFor(t, s.toClient, "the copy of the server's FIN", atLeast(2, from(s.server), isFin))
				// The client's second final ACK and the server's RST to it.
				waitFor(t, s.toClient, "the RST to the second final ACK", atLeast(1, from(s.server), isRst,
					func(p netlabtest.Packet) bool { return uint32(p.Seq) == finSeq(s.toClient.Packets(), s.server)+1 }))
				if got := s.tp.Client.SocketStates(t, port)[statetrack.TimeWait]; got != 0 {
					t.Errorf("client has %d sockets in TIME-WAIT after the RST, want 0 (tcp_rfc1337=0)\n%s", got, s.tp.Client.SS(t))
				}
				atClient, atServer, evs := s.finish()

				for _, dir := range []struct {
					name           string
					sender         netip.Addr
					upstream, copy *netlabtest.Capture
					up, down       []netlabtest.Packet
				}{
					{"client FIN", s.client, s.toClient, s.toServer, atClient, atServer},
					{"server FIN", s.server, s.toServer, s.toClient, atServer, atClient},
				} {
					sameSegment(t, dir.name+" upstream", pick(dir.up, from(dir.sender), isFin), 1, dir.up)
					gaps := sameSegment(t, dir.name+" downstream", pick(dir.down, from(dir.sender), isFin), 2, dir.down)
					if len(gaps) == 1 {
						within(t, dir.name+" copy delay", gaps[0], 100*time.Millisecond, time.Second)
					}
					checkCopyChecksum(t, dir.copy, dir.down, from(dir.sender), isFin)
				}
				fin := finSeq(atServer, s.client)
				ackOfFin := count(atServer, from(s.server), isPureAck, ackOf(fin+1))
				rstToFin := count(atServer, from(s.server), isRst, func(p netlabtest.Packet) bool { return uint32(p.Seq) == finSeq(atServer, s.server) })
				if tc.linger > 0 && (ackOfFin != 2 || rstToFin != 0) {
					t.Errorf("server in CLOSE_WAIT: %d ACKs of the client's FIN and %d RSTs, want 2 and 0", ackOfFin, rstToFin)
				}
				if tc.linger == 0 && (ackOfFin != 0 || rstToFin != 1) {
					t.Errorf("server closed: %d pure ACKs of the client's FIN and %d RSTs to its copy, want 0 and 1", ackOfFin, rstToFin)
				}
				finalAck := []pred{from(s.client), isPureAck, ackOf(finSeq(atClient, s.server) + 1)}
				if n := count(atClient, finalAck...); n != 2 {
					t.Errorf("client side: %d final ACKs, want 2 (one per copy of the server's FIN)", n)
				}

				for _, f := range wantFaults(t, evs, 2, "dup-fin", rules.Duplicate, statetrack.Fin, either, 1) {
					if f.After != 200*time.Millisecond || f.Copies != 1 {
						t.Errorf("duplicate %d copies after %s, want 1 after 200ms", f.Copies, f.After)
					}
				}
			})
		}
	})
}

// finSeq is the sequence number of sender's first FIN in pkts (0 if none).
func finSeq(pkts []netlabtest.Packet, sender netip.Addr) uint32 {
	if fins := pick(pkts, from(sender), isFin); len(fins) > 0 {
		return uint32(fins[0].Seq)
	}
	return 0
}

// checkCopyChecksum verifies, from the raw capture, the TCP checksum of
// every packet after the first that matches preds: the copies tcpchaos
// injected. (The originals may carry a partial checksum left for the
// veth's offload and are not checked.)
func checkCopyChecksum(t *testing.T, c *netlabtest.Capture, pkts []netlabtest.Packet, preds ...pred) {
	t.Helper()
	frames, lt := rawTCP(t, c)
	if len(frames) != len(pkts) {
		t.Fatalf("raw capture has %d TCP frames, the decoded one %d", len(frames), len(pkts))
	}
	seen := 0
	for i, p := range pkts {
		if len(pick([]netlabtest.Packet{p}, preds...)) == 0 {
			continue
		}
		if seen++; seen == 1 {
			continue
		}
		if err := tcpChecksumOK(frames[i], lt); err != nil {
			t.Errorf("copy %v: %v", p, err)
		}
	}
	if seen < 2 {
		t.Errorf("no copy to check the checksum of")
	}
}

// TestStaleDuplicateSyn: configs/stale-duplicate-syn.yaml, in IPv4 and
// IPv6. The client's SYN crosses the client side once and the server side
// twice, the copy 3 s later with the same sequence number and a valid
// checksum (gopacket recomputes it; the server counts no checksum error).
// The events show the rule duplicating syn nth 1. What the server makes of
// the copy depends on whether the connection is still open (open) or
// closed, the client in TIME_WAIT (after-close).
func TestStaleDuplicateSyn(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		t.Run("open", func(t *testing.T) {
			t.Parallel()
			staleSynOpen(t, v6)
		})
		t.Run("after-close", func(t *testing.T) {
			t.Parallel()
			staleSynAfterClose(t, v6)
		})
	})
}

// staleSynOpen: the server answers the copy with a challenge ACK
// (TcpExtTCPSYNChallenge) carrying the connection's current numbers, which
// the client takes for a duplicate ACK: no RST anywhere, and the
// connection still works.
func staleSynOpen(t *testing.T, v6 bool) {
	s := newScenario(t, "stale-duplicate-syn.yaml", v6)
	s.listen(pingPong(0))
	before := s.tp.Server.Nstat(t)
	c, _ := s.dial()
	request(t, c)
	waitFor(t, s.toServer, "the copy of the SYN", atLeast(2, from(s.client), isSyn))
	waitFor(t, s.toServer, "the server's answer to the copy", func(pkts []netlabtest.Packet) bool {
		syns := pick(pkts, from(s.client), isSyn)
		return count(pkts, from(s.server), isPureAck, func(p netlabtest.Packet) bool { return p.Time.After(syns[1].Time) }) > 0
	})
	request(t, c)
	c.Close()
	s.waitClosed()
	after := s.tp.Server.Nstat(t)
	atClient, atServer, evs := s.finish()

	syns := s.checkStaleCopy(atClient, atServer, evs)
	if len(syns) == 2 {
		// The challenge ACK acknowledges what the client sent so far:
		// its SYN and one request.
		challenge := pick(atServer, from(s.server), isPureAck, ackOf(uint32(syns[0].Seq)+1+5),
			func(p netlabtest.Packet) bool { return p.Time.After(syns[1].Time) })
		if len(challenge) == 0 {
			t.Errorf("no challenge ACK from the server after the copy")
		}
	}
	if n := count(atClient, isRst) + count(atServer, isRst); n != 0 {
		t.Errorf("%d RSTs on the wire, want none", n)
	}
	for _, k := range []string{"TcpExtTCPSYNChallenge", "TcpExtTCPChallengeACK"} {
		if d := after[k] - before[k]; d != 1 {
			t.Errorf("server %s moved by %d, want 1", k, d)
		}
	}
	if d := after["TcpInCsumErrors"] - before["TcpInCsumErrors"]; d != 0 {
		t.Errorf("server TcpInCsumErrors moved by %d, want 0", d)
	}
}

// staleSynAfterClose: the client closed first and sits in TIME_WAIT; the
// server has no connection left, so the copy looks like a new one
// (RFC 9293 3.5, figure 9): the server answers with a SYN-ACK of a new
// ISN. The client in TIME_WAIT answers that with an ACK of its old
// numbers; the server resets the embryonic connection with an RST that
// also ends the client's TIME_WAIT (tcp_rfc1337 = 0); its SYN-ACK
// retransmission then meets no socket and draws the client's RST, which
// removes the request (TcpExtEmbryonicRsts). The application never sees a
// second connection.
func staleSynAfterClose(t *testing.T, v6 bool) {
	s := newScenario(t, "stale-duplicate-syn.yaml", v6)
	s.listen(pingPong(0))
	before := s.tp.Server.Nstat(t)
	c, _ := s.dial()
	request(t, c)
	c.Close()
	s.waitClosed()
	if got := s.tp.Client.SocketStates(t, port)[statetrack.TimeWait]; got != 1 {
		t.Errorf("client sockets in TIME-WAIT before the copy: %d, want 1", got)
	}
	waitFor(t, s.toServer, "the copy of the SYN", atLeast(2, from(s.client), isSyn))
	waitFor(t, s.toServer, "the client's RST to the retransmitted SYN-ACK", atLeast(1, from(s.client), isRst))
	if got := s.tp.Client.Sockets(t, port); len(got) != 0 {
		t.Errorf("client sockets after the copy: %v, want none (TIME_WAIT ended by the RST)", got)
	}
	after := s.tp.Server.Nstat(t)
	atClient, atServer, evs := s.finish()

	syns := s.checkStaleCopy(atClient, atServer, evs)
	synAcks := pick(atServer, from(s.server), isSynAck)
	serverFin := finSeq(atServer, s.server)
	if len(syns) != 2 || len(synAcks) != 3 {
		t.Fatalf("want the SYN-ACK once for the SYN and twice for its copy, got %d", len(synAcks))
	}
	stale := synAcks[1]
	if stale.Seq == synAcks[0].Seq || uint32(stale.Ack) != uint32(syns[0].Seq)+1 || synAcks[2].Seq != stale.Seq {
		t.Errorf("SYN-ACKs %v, %v: want a new ISN acknowledging the stale SYN, and its retransmission", stale, synAcks[2])
	}
	within(t, "SYN-ACK retransmission gap", synAcks[2].Time.Sub(stale.Time), 900*time.Millisecond, 3*time.Second)
	twAck := pick(atServer, from(s.client), isPureAck, ackOf(serverFin+1), func(p netlabtest.Packet) bool { return p.Time.After(stale.Time) })
	if len(twAck) != 1 {
		t.Errorf("%d ACKs of the old connection from the client in TIME_WAIT after the stale SYN-ACK, want 1", len(twAck))
	}
	if n := count(atServer, from(s.server), isRst, func(p netlabtest.Packet) bool { return uint32(p.Seq) == serverFin+1 }); n != 1 {
		t.Errorf("%d RSTs from the server to that ACK, want 1", n)
	}
	if n := count(atServer, from(s.client), isRst, func(p netlabtest.Packet) bool { return uint32(p.Seq) == uint32(syns[0].Seq)+1 }); n != 1 {
		t.Errorf("%d RSTs from the client to the retransmitted SYN-ACK, want 1", n)
	}
	if d := after["TcpExtEmbryonicRsts"] - before["TcpExtEmbryonicRsts"]; d != 1 {
		t.Errorf("server TcpExtEmbryonicRsts moved by %d, want 1", d)
	}
	if d := after["TcpPassiveOpens"] - before["TcpPassiveOpens"]; d != 1 {
		t.Errorf("server TcpPassiveOpens moved by %d, want 1 (the stale SYN opened nothing)", d)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
}

// checkStaleCopy checks what both variants share: the SYN once upstream,
// twice downstream 3 s apart with a valid checksum on the copy, and the
// rule's duplicate event. It returns the downstream SYNs.
func (s *scenario) checkStaleCopy(atClient, atServer []netlabtest.Packet, evs []events.Event) []netlabtest.Packet {
	t := s.t
	t.Helper()
	sameSegment(t, "client SYNs upstream", pick(atClient, from(s.client), isSyn), 1, atClient)
	syns := pick(atServer, from(s.client), isSyn)
	if gaps := sameSegment(t, "client SYNs downstream", syns, 2, atServer); len(gaps) == 1 {
		within(t, "copy delay", gaps[0], 2900*time.Millisecond, 6*time.Second)
	}
	checkCopyChecksum(t, s.toServer, atServer, from(s.client), isSyn)
	f := wantFault(t, evs, "stale-syn", rules.Duplicate, statetrack.Syn, statetrack.Client, 1)
	if f.After != 3*time.Second || f.Copies != 1 {
		t.Errorf("duplicate %d copies after %s, want 1 after 3s", f.Copies, f.After)
	}
	return syns
}

// TestResetMidTransfer: configs/reset-mid-transfer.yaml. The first
// request is answered; the second is dropped and an RST reaches each end
// with the sequence number it expects, so both sockets fail with
// ECONNRESET; the events show the injected RSTs and both endpoints
// CLOSED.
func TestResetMidTransfer(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		s := newScenario(t, "reset-mid-transfer.yaml", v6)
		serverErr := s.listenUntilError()
		c, _ := s.dial()
		request(t, c)
		s.wantRequestReset(c, serverErr)
		s.waitResets()
		atClient, atServer, evs := s.finish()

		f := wantFault(t, evs, "reset-second-request", rules.Reset, statetrack.Data, statetrack.Client, 2)
		s.wantResetBoth(atClient, atServer, evs, f)
	})
}

// listenUntilError serves with pingPong until a read fails, and returns
// the channel on which each connection's handler sends the error that
// ended it (nil at EOF).
func (s *scenario) listenUntilError() <-chan error {
	errs := make(chan error, 4)
	s.listen(func(c net.Conn) error {
		r := bufio.NewReader(c)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				if err == io.EOF {
					err = nil
				}
				errs <- err
				return nil
			}
			if _, err := io.WriteString(c, "pong\n"); err != nil {
				return fmt.Errorf("write response: %w", err)
			}
		}
	})
	return errs
}

// wantRequestReset sends a request on c that the scenario resets on both
// sides: the client's read and the server's (its error on serverErr) fail
// with ECONNRESET. It closes c.
func (s *scenario) wantRequestReset(c net.Conn, serverErr <-chan error) {
	t := s.t
	t.Helper()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatalf("write request: %v", err)
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after the reset: %v, want ECONNRESET", err)
	}
	wantServerReset(t, serverErr, "after the reset")
	c.Close()
}

// wantServerReset waits for the error that ended the server's read
// (listenUntilError's channel) and checks that it is ECONNRESET.
func wantServerReset(t *testing.T, serverErr <-chan error, when string) {
	t.Helper()
	select {
	case err := <-serverErr:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("server read %s: %v, want ECONNRESET", when, err)
		}
	case <-time.After(ioTimeout):
		t.Errorf("server read %s did not end", when)
	}
}

// waitResets waits for the RSTs to both ends to reach the captures.
func (s *scenario) waitResets() {
	s.t.Helper()
	waitFor(s.t, s.toClient, "the RST to the client", atLeast(1, from(s.server), isRst))
	waitFor(s.t, s.toServer, "the RST to the server", atLeast(1, from(s.client), isRst))
}

// wantResetBoth checks a reset of both ends in place of the segment of
// fault f: one RST to each end, with the sequence number it expects (the
// segment's own to the server, its acknowledgment to the client), two
// injected RST events, both tracked endpoints CLOSED after them, no
// socket left on either end, and the summary counting the RSTs.
func (s *scenario) wantResetBoth(atClient, atServer []netlabtest.Packet, evs []events.Event, f events.Event) {
	t := s.t
	t.Helper()
	toClient, toServer := pick(atClient, from(s.server), isRst), pick(atServer, from(s.client), isRst)
	if len(toClient) != 1 || len(toServer) != 1 {
		t.Fatalf("RSTs: %d to the client, %d to the server, want 1 and 1", len(toClient), len(toServer))
	}
	if uint32(toServer[0].Seq) != f.Seq || uint32(toClient[0].Seq) != f.Ack {
		t.Errorf("RST seqs %d to the server, %d to the client, want %d and %d (the dropped segment's seq and ack)",
			toServer[0].Seq, toClient[0].Seq, f.Seq, f.Ack)
	}
	var injected []events.Event
	for _, e := range evs {
		if e.Injected && e.Kind == statetrack.Rst {
			injected = append(injected, e)
		}
	}
	if n := len(injected); n != 2 || injected[n-1].ClientState != statetrack.Closed || injected[n-1].ServerState != statetrack.Closed {
		t.Errorf("injected RST events %v, want 2, the last with both ends CLOSED", injected)
	}
	for _, ns := range []*netlabtest.NS{s.tp.Client, s.tp.Server} {
		for _, sock := range ns.Sockets(t, port) {
			if sock.State != statetrack.Listen {
				t.Errorf("%s: socket %v left after the reset, want none", ns.Name, sock)
			}
		}
	}
	wantSummary(t, s.chaos, "reset 1 (injected RSTs: 2)", "resets: 2 RSTs sent, 0 failed")
}

// wantSummary checks that tcpchaos's summary contains each of lines.
func wantSummary(t *testing.T, tc *tcpchaos, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if out := tc.stdout.String(); !strings.Contains(out, l) {
			t.Errorf("summary lacks %q:\n%s", l, out)
		}
	}
}

// TestRejectNewConnections: configs/reject-new-connections.yaml, started
// while a connection is established. connect() fails at once with
// ECONNREFUSED and no SYN reaches the server side, while the established
// connection, picked up mid-stream (no SYN of its own to refuse), keeps
// exchanging requests and closes normally.
func TestRejectNewConnections(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		s := newTopologyScenario(t, v6)
		s.listen(pingPong(0))
		old, _ := s.dial()
		request(t, old)
		s.start(configPath("reject-new-connections.yaml"))

		start := time.Now()
		_, err := s.tp.Client.Dial("tcp", s.serverAP.String(), ioTimeout)
		took := time.Since(start)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial: %v, want ECONNREFUSED", err)
		}
		within(t, "refused connect()", took, 0, 500*time.Millisecond)
		waitFor(t, s.toClient, "the RST", atLeast(1, from(s.server), isRst))
		request(t, old)
		request(t, old)
		old.Close()
		s.waitClosed()
		atClient, atServer, evs := s.finish()

		if syns := pick(atServer, from(s.client), isSyn); len(syns) != 0 {
			t.Errorf("%d SYNs reached the server side", len(syns))
		}
		rsts := pick(atClient, from(s.server), isRst)
		if syns := pick(atClient, from(s.client), isSyn); len(rsts) != 1 || len(syns) == 0 || rsts[0].Ack != syns[0].Seq+1 {
			t.Errorf("RSTs to the client %v, want one acknowledging the SYN %v", rsts, syns)
		}
		if n := count(atServer, from(s.server), isData); n != 2 {
			t.Errorf("%d responses on the established connection after the rule applied, want 2", n)
		}
		f := wantFault(t, evs, "refuse-syn", rules.Reset, statetrack.Syn, statetrack.Client, 1)
		for _, e := range evs {
			if e.ConnID != f.ConnID && !e.Midstream {
				t.Errorf("event of the established connection %+v not marked midstream", e)
			}
		}
		wantSummary(t, s.chaos, "reset 1 (injected RSTs: 1)", "resets: 1 RSTs sent, 0 failed")
	})
}

// TestChallengeAck: configs/challenge-ack.yaml. The server receives an
// RST one past its next expected sequence number and answers with a
// challenge ACK of that number; the client's data is retransmitted and
// its request answered: the connection lives on.
func TestChallengeAck(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		s := newScenario(t, "challenge-ack.yaml", v6)
		_, atClient, atServer, evs := s.pingPongOnce()

		f := wantFault(t, evs, "blind-reset", rules.Reset, statetrack.Data, statetrack.Client, 1)
		rsts := pick(atServer, from(s.client), isRst)
		if len(rsts) != 1 || uint32(rsts[0].Seq) != f.Seq+1 {
			t.Fatalf("RSTs to the server %v, want one with seq %d (one past the exact %d)", rsts, f.Seq+1, f.Seq)
		}
		var challenge []netlabtest.Packet
		for _, p := range pick(atClient, from(s.server), isPureAck, ackOf(f.Seq)) {
			if p.Time.After(rsts[0].Time) {
				challenge = append(challenge, p)
			}
		}
		if len(challenge) == 0 {
			t.Errorf("no challenge ACK of %d from the server after the RST", f.Seq)
		}
	})
}

// TestResetLocalMode: configs/reset-mid-transfer.yaml in the server's own
// namespace (mode local), IPv4 and IPv6. The second request is dropped
// on its way in; the RST to the client leaves through the server's
// interface with the sequence number the client expects, the one to the
// local server is injected into its own stack: both reads fail with
// ECONNRESET and the server keeps no socket.
func TestResetLocalMode(t *testing.T) {
	t.Parallel()
	families(t, func(t *testing.T, v6 bool) {
		s := newTopologyScenario(t, v6)
		serverErr := s.listenUntilError()
		capture := s.tp.Server.Capture(t, s.tp.HostIf, "tcp")
		chaos := startTcpchaos(t, s.tp.Server, configPath("reset-mid-transfer.yaml"), "--mode", "local")
		c, _ := s.dial()
		request(t, c)
		s.wantRequestReset(c, serverErr)
		waitFor(t, capture, "the RST to the client", atLeast(1, from(s.server), isRst))
		pkts := capture.Stop()
		evs := chaos.stop()
		t.Logf("server interface:\n%s\nevents:\n%s", dump(pkts), dumpEvents(evs))

		f := wantFault(t, evs, "reset-second-request", rules.Reset, statetrack.Data, statetrack.Client, 2)
		if rsts := pick(pkts, from(s.server), isRst); len(rsts) != 1 || uint32(rsts[0].Seq) != f.Ack {
			t.Errorf("RSTs to the client %v, want one with seq %d", rsts, f.Ack)
		}
		if got := s.tp.Server.SocketStates(t, port); got[statetrack.Established] != 0 {
			t.Errorf("server sockets %v after the reset, want none established", got)
		}
		wantSummary(t, chaos, "reset 1 (injected RSTs: 2)", "resets: 2 RSTs sent, 0 failed")
	})
}

// TestResetClientOnly: configs/reset-mid-transfer.yaml with `reset:
// client`. Only the client gets an RST: its read fails with ECONNRESET
// while ss still shows the server ESTABLISHED, and the tracker agrees.
// The server's next segment reaches the closed client, whose kernel
// answers with an RST of its own: that one closes the server (its read
// fails with ECONNRESET), on the wire and in the tracker.
func TestResetClientOnly(t *testing.T) {
	t.Parallel()
	s := newScenarioWith(t, configVariant(t, "reset-mid-transfer.yaml", "reset: both", "reset: client"), false)
	speak, serverErr := make(chan struct{}), make(chan error, 1)
	s.listen(func(c net.Conn) error {
		r := bufio.NewReader(c)
		if _, err := r.ReadString('\n'); err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		if _, err := io.WriteString(c, "pong\n"); err != nil {
			return fmt.Errorf("write response: %w", err)
		}
		select { // a test that fails before close(speak) must not hang in cleanup
		case <-speak:
		case <-time.After(ioTimeout):
			return errors.New("never told to write the late line")
		}
		if _, err := io.WriteString(c, "late\n"); err != nil {
			return fmt.Errorf("write late line: %w", err)
		}
		_, err := r.ReadString('\n')
		serverErr <- err
		return nil
	})
	c, _ := s.dial()
	request(t, c)
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatalf("write second request: %v", err)
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after the reset: %v, want ECONNRESET", err)
	}
	if got := s.tp.Server.SocketStates(t, port); got[statetrack.Established] != 1 {
		t.Errorf("server sockets %v after the RST to the client, want one ESTABLISHED", got)
	}
	close(speak)
	wantServerReset(t, serverErr, "after its segment met the closed client")
	waitFor(t, s.toServer, "the client's RST", atLeast(1, from(s.client), isRst))
	atClient, _, evs := s.finish()

	f := wantFault(t, evs, "reset-second-request", rules.Reset, statetrack.Data, statetrack.Client, 2)
	if rsts := pick(atClient, from(s.server), isRst); len(rsts) != 1 || uint32(rsts[0].Seq) != f.Ack {
		t.Errorf("RSTs to the client %v, want one with seq %d", rsts, f.Ack)
	}
	var injected, answer []events.Event
	for _, e := range packetEvents(evs, statetrack.Rst, statetrack.Server) {
		if e.Injected {
			injected = append(injected, e)
		}
	}
	for _, e := range packetEvents(evs, statetrack.Rst, statetrack.Client) {
		if !e.Injected {
			answer = append(answer, e)
		}
	}
	if len(injected) != 1 || injected[0].ClientState != statetrack.Closed || injected[0].ServerState != statetrack.Established {
		t.Errorf("injected RST events %v, want one leaving the client CLOSED and the server ESTABLISHED", injected)
	}
	if len(answer) != 1 || answer[0].ServerState != statetrack.Closed {
		t.Errorf("the client's own RST events %v, want one closing the server", answer)
	}
}

// TestResetSpuriousRetransmission: the server's ACK of the request and
// its response are lost once, so the client retransmits a request
// the server already has, and {reset: server} replaces that
// retransmission. The RST carries the request's sequence number, below
// the server's rcv_nxt: Linux drops it, the server stays ESTABLISHED
// (ss), retransmits its response and the request completes; the tracker
// agrees, since the server had acknowledged the whole request.
func TestResetSpuriousRetransmission(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "reset-spurious.yaml")
	if err := os.WriteFile(cfg, []byte(`intercept: {ports: [8080]}
rules:
  - name: lose-response
    match: {packet: [ack, data], from: server, nth: 1}
    action: drop
  - name: lose-response-again # else the server's retransmission may beat the client's
    match: {packet: data, from: server, nth: 2}
    action: drop
  - name: reset-retransmission
    match: {packet: data, from: client, retransmission: true}
    action: {reset: server}
    limit: 1
expect:
  - name: reset-fired
    hits: {rule: reset-retransmission, min: 1}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newScenarioWith(t, cfg, false)
	s.listen(pingPong(0))
	c, _ := s.dial()
	request(t, c)
	if got := s.tp.Server.SocketStates(t, port); got[statetrack.Established] != 1 {
		t.Errorf("server sockets %v after the RST, want one ESTABLISHED", got)
	}
	c.Close()
	s.waitClosed()
	atClient, atServer, evs := s.finish()

	reqs := pick(atClient, from(s.client), isData)
	rsts := pick(atServer, from(s.client), isRst)
	if len(reqs) < 2 || len(rsts) != 1 || rsts[0].Seq != reqs[0].Seq {
		t.Fatalf("requests %v, RSTs to the server %v: want a retransmission and one RST at the request's seq", reqs, rsts)
	}
	reset := slices.IndexFunc(faults(evs), func(e events.Event) bool { return e.Rule == "reset-retransmission" && e.Nth == 2 })
	if f := faults(evs); len(f) < 3 || reset < 2 {
		t.Errorf("faults %v, want the lost ACK and response, then the reset of the request's retransmission", f)
	}
	for _, e := range evs {
		if e.Injected && (e.ServerState != statetrack.Established || e.ClientState != statetrack.Established) {
			t.Errorf("injected RST event %+v, want both ends still ESTABLISHED", e)
		}
	}
}
