package pipeline_test

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/expect"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/internal/trail"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// established is a pipeline that has seen one connection's handshake, with
// a raw data segment (client to server) and its ACK whose sequence numbers
// step moves forward, as a bulk transfer would.
type established struct {
	p         *pipeline.Pipeline
	parser    *decode.Parser
	data, ack []byte
	seg       statetrack.Segment
	now       time.Time
}

const (
	clientISN, serverISN = 1000, 5000
	mss                  = 1448
	tcpSeqOff, tcpAckOff = 20 + 4, 20 + 8 // in an IPv4 packet without options
)

// benchRules are a typical config with a rule on data, so that every data
// packet and every ACK is tried against every rule.
func benchRules() []rules.Rule {
	return []rules.Rule{
		{Name: "lose-final-ack", Match: rules.Match{Packets: []statetrack.Kind{statetrack.FinalAck}, Nth: 1, Ports: []uint16{8080}}, Action: rules.Action{Type: rules.Drop}, Probability: 1},
		{Name: "slow-syn-ack", Match: rules.Match{Packets: []statetrack.Kind{statetrack.SynAck}, Nth: 2}, Action: rules.Action{Type: rules.Delay, Delay: time.Millisecond}, Probability: 1},
		{Name: "data-retransmissions", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Data}, Retransmission: new(true)}, Action: rules.Action{Type: rules.Drop}, Probability: 0.5},
	}
}

func newEstablished(tb testing.TB, sink events.Sink) *established {
	tb.Helper()
	e := &established{
		p:      pipeline.New(statetrack.Config{}, rules.Compile(benchRules()), 1, sink),
		parser: decode.NewParser(),
		now:    time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	client, server := net.IPv4(198, 18, 1, 2).To4(), net.IPv4(198, 19, 2, 2).To4()
	build := func(fromClient bool, flags statetrack.Flags, seq, ack uint32, n int) []byte {
		src, dst, sport, dport := client, server, layers.TCPPort(40000), layers.TCPPort(8080)
		if !fromClient {
			src, dst, sport, dport = server, client, dport, sport
		}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		tcp := &layers.TCP{SrcPort: sport, DstPort: dport, Seq: seq, Ack: ack, Window: 65535,
			SYN: flags&statetrack.SYN != 0, ACK: flags&statetrack.ACK != 0, PSH: flags&statetrack.PSH != 0}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			tb.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			ip, tcp, gopacket.Payload(make([]byte, n)))
		if err != nil {
			tb.Fatal(err)
		}
		return buf.Bytes()
	}
	const ack = statetrack.ACK
	for _, pkt := range [][]byte{
		build(true, statetrack.SYN, clientISN, 0, 0),
		build(false, statetrack.SYN|ack, serverISN, clientISN+1, 0),
		build(true, ack, clientISN+1, serverISN+1, 0),
	} {
		if v := e.handle(tb, pkt); v.Action != rules.Accept {
			tb.Fatalf("handshake packet %s: action %s, want accept", v.Obs.Kind, v.Action)
		}
	}
	e.data = build(true, ack|statetrack.PSH, clientISN+1, serverISN+1, mss)
	e.ack = build(false, ack, serverISN+1, clientISN+1+mss, 0)
	return e
}

// handle decodes pkt and hands it to the pipeline a microsecond after the
// previous packet.
func (e *established) handle(tb testing.TB, pkt []byte) rules.Verdict {
	if err := e.parser.Decode(pkt, &e.seg); err != nil {
		tb.Fatal(err)
	}
	e.now = e.now.Add(time.Microsecond)
	return e.p.Handle(&e.seg, e.now)
}

// step handles the next data segment and its ACK.
func (e *established) step(tb testing.TB) (data, ack rules.Verdict) {
	data = e.handle(tb, e.data)
	ack = e.handle(tb, e.ack)
	binary.BigEndian.PutUint32(e.data[tcpSeqOff:], binary.BigEndian.Uint32(e.data[tcpSeqOff:])+mss)
	binary.BigEndian.PutUint32(e.ack[tcpAckOff:], binary.BigEndian.Uint32(e.ack[tcpAckOff:])+mss)
	return data, ack
}

func TestEstablishedDataAndAck(t *testing.T) {
	e := newEstablished(t, nil)
	for i := range 3 {
		data, ack := e.step(t)
		if data.Obs.Kind != statetrack.Data || data.Obs.Retransmission || data.Action != rules.Accept {
			t.Errorf("step %d: data segment seen as %s (retransmission %v), action %s; want an accepted original data", i, data.Obs.Kind, data.Obs.Retransmission, data.Action)
		}
		if ack.Obs.Kind != statetrack.Ack || ack.Action != rules.Accept {
			t.Errorf("step %d: ACK seen as %s, action %s; want an accepted ack", i, ack.Obs.Kind, ack.Action)
		}
		if got := data.Obs.After; got != [2]statetrack.State{statetrack.Established, statetrack.Established} {
			t.Errorf("step %d: states %v, want both established", i, got)
		}
	}
}

func TestHandleDoesNotAllocate(t *testing.T) {
	e := newEstablished(t, nil)
	e.step(t)
	if n := testing.AllocsPerRun(1000, func() { e.step(t) }); n > 0 {
		t.Errorf("decode and Handle of a data segment and its ACK allocate %.1f times, want 0", n)
	}
}

// TestHandleWithEventsDoesNotAllocate: with --events the packet path hands
// each event by value to the writer's buffer (here full: the writer is not
// running, so that the events are dropped, and counted).
func TestHandleWithEventsDoesNotAllocate(t *testing.T) {
	a := events.NewAsync(events.NewJSONLines(io.Discard), 4)
	e := newEstablished(t, a)
	e.step(t)
	if n := testing.AllocsPerRun(1000, func() { e.step(t) }); n > 0 {
		t.Errorf("decode and Handle of a data segment and its ACK with events allocate %.1f times, want 0", n)
	}
	if s := a.Stats(); s.Emitted != 4 || s.Dropped != 2*1001+5-4 {
		t.Errorf("events %+v, want 4 queued and the rest (of 5 + 2×1001) dropped", s)
	}
}

// BenchmarkPipeline measures the per-packet work of the live path short of
// the kernel: decode, track and decide a data segment and its ACK on an
// established connection (two packets per op), with a config of three
// rules, none of which takes these packets.
func BenchmarkPipeline(b *testing.B) {
	e := newEstablished(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		e.step(b)
	}
}

// BenchmarkPipelineWithEvents is BenchmarkPipeline with --events: each
// packet's event goes to the buffer of a writer goroutine encoding JSON
// lines (to io.Discard). dropped/op counts the events the writer could
// not keep up with.
func BenchmarkPipelineWithEvents(b *testing.B) {
	a := events.NewAsync(events.NewJSONLines(io.Discard), events.Buffer)
	go a.Run()
	e := newEstablished(b, a)
	b.ReportAllocs()
	for b.Loop() {
		e.step(b)
	}
	b.StopTimer()
	a.Close()
	b.ReportMetric(float64(a.Stats().Dropped)/float64(b.N), "dropped/op")
}

// TestQueuesConnIDs: the pipelines of two queues, each with its own
// tracker, give their connections distinct conn_ids (the first connection
// of each takes slot 0 of its table), so that what the run keys by conn_id
// over all queues (the control socket's trails, the expectations, a
// lookup by id in every queue's table) keeps the connections apart; and a
// queue's pipeline ignores the other's conn_ids.
func TestQueuesConnIDs(t *testing.T) {
	trails := trail.New(0, 0)
	ev := expect.New([]expect.Expectation{{Name: "all-established", Check: &expect.Reaches{State: statetrack.Established}}})
	pipes := pipeline.NewQueues(2, statetrack.Config{ServerPorts: []uint16{8080}}, rules.Compile(nil), 1, events.Tee{trails, ev}, nil)
	server := netip.MustParseAddrPort("198.19.0.1:8080")
	clients := []netip.AddrPort{netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:40000")}
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	ids := make([]uint64, len(pipes))
	for i, p := range pipes {
		c := clients[i]
		p.Handle(&statetrack.Segment{Src: c, Dst: server, Flags: statetrack.SYN, Seq: 100}, t0)
		p.Handle(&statetrack.Segment{Src: server, Dst: c, Flags: statetrack.SYN | statetrack.ACK, Seq: 300, Ack: 101}, t0)
		ids[i] = p.Handle(&statetrack.Segment{Src: c, Dst: server, Flags: statetrack.ACK, Seq: 101, Ack: 301}, t0).Obs.ConnID
	}
	if ids[0] == ids[1] || ids[0] == 0 || ids[1] == 0 {
		t.Fatalf("conn_ids %d and %d of two queues' connections, want two distinct ones", ids[0], ids[1])
	}
	for i, id := range ids {
		// Looked up by id over every queue's table, as ctl timeline does.
		var found []statetrack.ConnInfo
		for _, p := range pipes {
			p.EachSlot(0, 100, func(ci statetrack.ConnInfo) {
				if ci.ConnID == id {
					found = append(found, ci)
				}
			})
		}
		if len(found) != 1 || found[0].Client != clients[i] {
			t.Errorf("conn_id %d (queue %d): found %+v, want the one connection of %s", id, i, found, clients[i])
		}
		if sum, ok := trails.Summary(id); !ok || sum.Client != clients[i] || sum.Packets[statetrack.Syn] != 1 {
			t.Errorf("conn_id %d (queue %d): trail %+v (%v), want its own 1 syn", id, i, sum, ok)
		}
		// The other queue's pipeline does not take it for one of its own.
		other := pipes[1-i]
		other.Quieted(id, t0)
		var quiet bool
		other.EachSlot(0, 100, func(ci statetrack.ConnInfo) { quiet = quiet || ci.Quiet })
		if quiet {
			t.Errorf("queue %d's pipeline took queue %d's conn_id %d for its own connection", 1-i, i, id)
		}
	}
	out := ev.End(t0, nil)
	if len(out) != 1 || !out[0].Holds || out[0].Measured.Connections != 2 || out[0].Measured.Reached != 2 {
		t.Errorf("expectation over both queues: %+v, want 2 connections, both ESTABLISHED", out)
	}
}
