package replay

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/events"
	"github.com/tcpchaos/tcpchaos/internal/execute"
	"github.com/tcpchaos/tcpchaos/internal/pipeline"
	"github.com/tcpchaos/tcpchaos/internal/tap"
	"github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// wire builds frames of one connection between a client and a server.
type wire struct {
	t              *testing.T
	link           decode.LinkType
	client, server net.IP
	cport, sport   uint16
	frames         []capture.Frame
	at             time.Duration
}

func newWire(t *testing.T, v6 bool) *wire {
	w := &wire{t: t, link: decode.LinkRaw, client: net.ParseIP("198.18.1.2").To4(), server: net.ParseIP("198.19.2.2").To4(), cport: 40000, sport: 8080}
	if v6 {
		w.link = decode.LinkEthernet
		w.client, w.server = net.ParseIP("fd00:1::2"), net.ParseIP("fd00:2::2")
	}
	return w
}

// send appends a segment from the client (fromClient) or the server, 1 ms
// after the previous one.
func (w *wire) send(fromClient bool, flags string, seq, ack uint32, payload int) {
	w.t.Helper()
	src, dst, sp, dp := w.client, w.server, w.cport, w.sport
	if !fromClient {
		src, dst, sp, dp = dst, src, dp, sp
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: seq, Ack: ack, Window: 64240}
	for _, f := range flags {
		switch f {
		case 'S':
			tcp.SYN = true
		case 'F':
			tcp.FIN = true
		case 'R':
			tcp.RST = true
		case '.':
			tcp.ACK = true
		}
	}
	var ls []gopacket.SerializableLayer
	if w.link == decode.LinkEthernet {
		ls = append(ls, &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv6})
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, ip)
	}
	ls = append(ls, tcp, gopacket.Payload(make([]byte, payload)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		w.t.Fatal(err)
	}
	w.at += time.Millisecond
	data := append([]byte(nil), buf.Bytes()...)
	w.frames = append(w.frames, capture.Frame{Data: data, TS: t0.Add(w.at), CaptureLen: len(data), OrigLen: len(data)})
}

// connection appends a whole connection: handshake, 10 bytes each way, and
// a four-way close started by the client.
func (w *wire) connection() {
	const c, s = true, false
	w.send(c, "S", 100, 0, 0)
	w.send(s, "S.", 500, 101, 0)
	w.send(c, ".", 101, 501, 0)
	w.send(c, ".", 101, 501, 10)
	w.send(s, ".", 501, 111, 10)
	w.send(c, ".", 111, 511, 0)
	w.send(c, "F.", 111, 511, 0)
	w.send(s, ".", 511, 112, 0)
	w.send(s, "F.", 511, 112, 0)
	w.send(c, ".", 112, 512, 0)
}

// result is what one replay produced.
type result struct {
	counts Counts
	out    []capture.Frame
	events []events.Event
}

// replay runs the frames through the rules given as config YAML-like values.
func (w *wire) replay(rs ...rules.Rule) result {
	w.t.Helper()
	return w.replayTapped(nil, rs...)
}

// replayTapped is replay with tap shown the packets (nil: none).
func (w *wire) replayTapped(tp func(p *pipeline.Pipeline) execute.Tap, rs ...rules.Rule) result {
	w.t.Helper()
	var in bytes.Buffer
	cw, err := capture.NewWriter(&in, "in", w.link, 65535, true)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, f := range w.frames {
		if err := cw.Write(f); err != nil {
			w.t.Fatal(err)
		}
	}
	if err := cw.Close(); err != nil {
		w.t.Fatal(err)
	}
	return replayTapped(w.t, &in, tp, rs...)
}

func replayCapture(t *testing.T, in *bytes.Buffer, rs ...rules.Rule) result {
	t.Helper()
	return replayTapped(t, in, nil, rs...)
}

// replayTapped replays with tap shown the packets (nil: none).
func replayTapped(t *testing.T, in *bytes.Buffer, tp func(p *pipeline.Pipeline) execute.Tap, rs ...rules.Rule) result {
	t.Helper()
	r, err := capture.NewReader(in, "in")
	if err != nil {
		t.Fatal(err)
	}
	var out, ev bytes.Buffer
	cw, err := capture.NewWriter(&out, "out", r.LinkType(), r.Snaplen(), true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rs {
		if rs[i].Name == "" {
			rs[i].Name = "r"
		}
		if rs[i].Probability == 0 {
			rs[i].Probability = 1
		}
	}
	j := events.NewJSONLines(&ev)
	p := pipeline.New(statetrack.Config{ServerPorts: []uint16{8080}}, rules.Compile(rs), 1, j)
	var x execute.Tap
	if tp != nil {
		x = tp(p)
	}
	counts, err := Run(r, cw, p, x)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	res := result{counts: counts}
	or, err := capture.NewReader(&out, "out")
	if err != nil {
		t.Fatal(err)
	}
	for {
		f, err := or.Next()
		if err != nil {
			break
		}
		res.out = append(res.out, f)
	}
	dec := json.NewDecoder(&ev)
	for dec.More() {
		var e events.Event
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		res.events = append(res.events, e)
	}
	return res
}

// segments decodes the output frames.
func (res result) segments(t *testing.T, link decode.LinkType) []statetrack.Segment {
	t.Helper()
	p := decode.NewParser()
	segs := make([]statetrack.Segment, len(res.out))
	for i, f := range res.out {
		if _, err := p.DecodeFrame(f.Data, f.OrigLen, link, &segs[i]); err != nil {
			t.Fatalf("output frame %d: %v", i, err)
		}
	}
	return segs
}

func (res result) checkSorted(t *testing.T) {
	t.Helper()
	for i := 1; i < len(res.out); i++ {
		if res.out[i].TS.Before(res.out[i-1].TS) {
			t.Errorf("output frame %d at %s is before frame %d at %s", i, res.out[i].TS, i-1, res.out[i-1].TS)
		}
	}
}

func drop(kind statetrack.Kind, nth uint32) rules.Rule {
	return rules.Rule{Match: rules.Match{Packets: []statetrack.Kind{kind}, Nth: nth}, Action: rules.Action{Type: rules.Drop}}
}

func TestReplayWithoutRulesCopiesEveryFrame(t *testing.T) {
	w := newWire(t, false)
	w.connection()
	res := w.replay()
	if res.counts.Frames != 10 || res.counts.TCP != 10 || res.counts.Written != 10 || res.counts.Passed != 0 {
		t.Fatalf("counts = %+v, want 10 frames, 10 TCP, 10 written", res.counts)
	}
	for i, f := range res.out {
		if !bytes.Equal(f.Data, w.frames[i].Data) || !f.TS.Equal(w.frames[i].TS) {
			t.Errorf("frame %d changed", i)
		}
	}
	last := res.events[len(res.events)-1]
	if last.Kind != statetrack.FinalAck || last.ClientState != statetrack.TimeWait || last.ServerState != statetrack.Closed {
		t.Errorf("last event = %+v, want final-ack with client TIME_WAIT, server CLOSED", last)
	}
}

func TestReplayDropsFinalAck(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		w := newWire(t, v6)
		w.connection()
		res := w.replay(drop(statetrack.FinalAck, 1))
		if len(res.out) != 9 {
			t.Fatalf("v6=%v: %d frames written, want 9", v6, len(res.out))
		}
		segs := res.segments(t, w.link)
		if last := segs[len(segs)-1]; last.Flags != statetrack.FIN|statetrack.ACK {
			t.Errorf("v6=%v: last frame flags %s, want the server's FIN (the final ACK is dropped)", v6, last.Flags)
		}
		e := res.events[len(res.events)-1]
		if e.Kind != statetrack.FinalAck || e.Action != rules.Drop || e.Rule != "r" || e.ServerState != statetrack.LastAck || e.ClientState != statetrack.TimeWait {
			t.Errorf("v6=%v: drop event = %+v, want final-ack dropped with server still LAST_ACK", v6, e)
		}
		if v6 && e.Conn() != "[fd00:1::2]:40000->[fd00:2::2]:8080" {
			t.Errorf("IPv6 conn = %q, want bracketed addresses", e.Conn())
		}
	}
}

func TestReplayDelayMovesPacketAndReleasesState(t *testing.T) {
	w := newWire(t, false)
	w.connection()
	w.cport++ // a packet of another connection, 1 ms after the final ACK
	w.send(true, "S", 900, 0, 0)
	hold := 300 * time.Millisecond
	res := w.replay(rules.Rule{
		Match:  rules.Match{Packets: []statetrack.Kind{statetrack.FinalAck}},
		Action: rules.Action{Type: rules.Delay, Delay: hold},
	})
	res.checkSorted(t)
	if len(res.out) != 11 {
		t.Fatalf("%d frames written, want 11", len(res.out))
	}
	segs := res.segments(t, w.link)
	if !bytes.Equal(res.out[10].Data, w.frames[9].Data) {
		t.Fatalf("last frame is %s, want the delayed final ACK after the SYN that followed it", segs[10].Flags)
	}
	released := w.frames[9].TS.Add(hold)
	if !res.out[10].TS.Equal(released) {
		t.Errorf("delayed final ACK written at %s, want %s", res.out[10].TS, released)
	}
	var delayEvent, stateEvent *events.Event
	for i, e := range res.events {
		switch {
		case e.Kind == statetrack.FinalAck && e.Rule != "" && e.Action == rules.Delay:
			delayEvent = &res.events[i]
		case e.IsState() && e.Reason == events.Released:
			stateEvent = &res.events[i]
		}
	}
	if delayEvent == nil || delayEvent.Delay != 300*time.Millisecond || delayEvent.ServerState != statetrack.LastAck {
		t.Errorf("delay event = %+v, want final-ack held 300ms with the server still in LAST_ACK", delayEvent)
	}
	if stateEvent == nil || !stateEvent.Time.Equal(released) || stateEvent.ServerState != statetrack.Closed || stateEvent.ClientState != statetrack.TimeWait {
		t.Errorf("release event = %+v, want the server CLOSED at %s", stateEvent, released)
	}
}

func TestReplayDuplicateInsertsCopiesAtTheirTime(t *testing.T) {
	w := newWire(t, false)
	w.connection()
	res := w.replay(rules.Rule{
		Match:  rules.Match{Packets: []statetrack.Kind{statetrack.Syn}, Nth: 1},
		Action: rules.Action{Type: rules.Duplicate, Copies: 2, After: 3 * time.Second},
	})
	res.checkSorted(t)
	if len(res.out) != 12 {
		t.Fatalf("%d frames written, want 12 (10 + 2 copies)", len(res.out))
	}
	segs := res.segments(t, w.link)
	for _, i := range []int{10, 11} {
		if segs[i].Flags != statetrack.SYN || segs[i].Seq != 100 {
			t.Errorf("frame %d = %s seq %d, want a copy of the SYN (seq 100)", i, segs[i].Flags, segs[i].Seq)
		}
		if want := w.frames[0].TS.Add(3 * time.Second); !res.out[i].TS.Equal(want) {
			t.Errorf("copy %d at %s, want %s", i, res.out[i].TS, want)
		}
		if !bytes.Equal(res.out[i].Data, w.frames[0].Data) {
			t.Errorf("copy %d differs from the original", i)
		}
	}
	if e := res.events[0]; e.Action != rules.Duplicate || e.Copies != 2 || e.After != 3*time.Second {
		t.Errorf("first event = %+v, want the SYN duplicated ×2 after 3s", e)
	}
}

func TestReplayPassesNonTCPThrough(t *testing.T) {
	w := newWire(t, false)
	w.send(true, "S", 1, 0, 0)
	udp := &layers.UDP{SrcPort: 53, DstPort: 5353}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: w.client, DstIP: w.server}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp); err != nil {
		t.Fatal(err)
	}
	w.frames = append(w.frames, capture.Frame{Data: buf.Bytes(), TS: t0.Add(time.Second), CaptureLen: len(buf.Bytes()), OrigLen: len(buf.Bytes())})
	res := w.replay(drop(statetrack.Syn, 0))
	if res.counts.Passed != 1 || res.counts.TCP != 1 || len(res.out) != 1 || !bytes.Equal(res.out[0].Data, buf.Bytes()) {
		t.Errorf("counts %+v, %d written: want the SYN dropped and the UDP frame copied through", res.counts, len(res.out))
	}
}

// TestReplayKernelCaptures runs every real kernel capture of the repository
// through a config that drops each connection's first final ACK, and checks
// that exactly those packets are gone.
func TestReplayKernelCaptures(t *testing.T) {
	files, err := filepath.Glob("../../statetrack/testdata/kernel-captures/*.pcap")
	if err != nil || len(files) == 0 {
		t.Fatalf("no kernel captures found: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			res := replayCapture(t, bytes.NewBuffer(data), drop(statetrack.FinalAck, 1))
			drops := 0
			for _, e := range res.events {
				if e.Rule != "" && e.Action == rules.Drop {
					drops++
					if e.Kind != statetrack.FinalAck || e.Nth != 1 {
						t.Errorf("dropped %s nth %d, want final-ack nth 1", e.Kind, e.Nth)
					}
				}
			}
			if got, want := res.counts.Written, res.counts.Frames-uint64(drops); got != want {
				t.Errorf("%d frames written, want %d (%d read, %d dropped)", got, want, res.counts.Frames, drops)
			}
			res.checkSorted(t)
		})
	}
}

// TestReplayDuplicateOfTruncatedFrameSkipped: a frame the capture holds in
// part (cut at the snaplen) is let through but not copied, and its copies
// are counted, as the live path does for a packet copied in part.
func TestReplayDuplicateOfTruncatedFrameSkipped(t *testing.T) {
	w := newWire(t, false)
	w.connection()
	data := &w.frames[3] // the client's 10 bytes of data
	data.Data = data.Data[:40]
	data.CaptureLen = len(data.Data)
	client := statetrack.Client
	res := w.replay(rules.Rule{
		Match:  rules.Match{Packets: []statetrack.Kind{statetrack.Data}, From: &client, Nth: 1},
		Action: rules.Action{Type: rules.Duplicate, Copies: 2, After: time.Second},
	})
	if len(res.out) != 10 || res.counts.Written != 10 {
		t.Fatalf("%d frames written (counted %d), want 10: no copies of the truncated frame", len(res.out), res.counts.Written)
	}
	if res.counts.CopiesSkipped != 2 {
		t.Errorf("copies skipped %d, want 2", res.counts.CopiesSkipped)
	}
	if out := res.out[3]; !bytes.Equal(out.Data, data.Data) || out.OrigLen != data.OrigLen {
		t.Errorf("truncated frame written as %d of %d bytes, want %d of %d", len(out.Data), out.OrigLen, len(data.Data), data.OrigLen)
	}
	if e := res.events[3]; e.Action != rules.Duplicate || e.Len != 10 {
		t.Errorf("event = %+v, want the 10-byte data segment duplicated", e)
	}
}

// TestReplayReset: a reset leaves the data segment out and writes an RST
// to each endpoint in its place, with the sequence number each expects
// (on Ethernet the one back to the sender with the addresses swapped);
// the injected RSTs are in the events and close both tracked endpoints.
func TestReplayReset(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		w := newWire(t, v6)
		w.send(true, "S", 100, 0, 0)
		w.send(false, "S.", 500, 101, 0)
		w.send(true, ".", 101, 501, 0)
		w.send(true, ".", 101, 501, 10)
		res := w.replay(rules.Rule{Match: rules.Match{Packets: []statetrack.Kind{statetrack.Data}},
			Action: rules.Action{Type: rules.Reset, Reset: rules.Both}})
		segs := res.segments(t, w.link)
		if len(segs) != 5 {
			t.Fatalf("v6 %v: %d frames out, want 3 + 2 RSTs", v6, len(segs))
		}
		toClient, toServer := segs[3], segs[4]
		if toClient.Dst.Port() != 40000 || toClient.Seq != 501 || toClient.Flags != statetrack.RST {
			t.Errorf("v6 %v: RST to the client %+v, want seq 501 flags R", v6, toClient)
		}
		if toServer.Dst.Port() != 8080 || toServer.Seq != 101 || toServer.Flags != statetrack.RST {
			t.Errorf("v6 %v: RST to the server %+v, want seq 101 flags R", v6, toServer)
		}
		if v6 && !bytes.Equal(res.out[3].Data[:6], res.out[2].Data[6:12]) {
			t.Errorf("RST to the client has destination MAC % x, want the sender's % x", res.out[3].Data[:6], res.out[2].Data[6:12])
		}
		var injected int
		for _, e := range res.events {
			if e.Injected {
				injected++
				if e.Kind != statetrack.Rst {
					t.Errorf("injected event of kind %v", e.Kind)
				}
			}
		}
		last := res.events[len(res.events)-1]
		if injected != 2 || last.ClientState != statetrack.Closed || last.ServerState != statetrack.Closed {
			t.Errorf("v6 %v: %d injected events, last states %v/%v, want 2 and CLOSED/CLOSED", v6, injected, last.ClientState, last.ServerState)
		}
	}
}

// eventList keeps the events it is given.
type eventList []events.Event

func (l *eventList) Emit(e events.Event) { *l = append(*l, e) }

// TestReplayEndsAtFailedWrite: a replay whose output refuses a frame ends
// there, with the error: a frame still held (the client's FIN) is neither
// written nor delivered (no "released" event for it), as no later frame
// is read.
func TestReplayEndsAtFailedWrite(t *testing.T) {
	const c, s = true, false
	w := newWire(t, false)
	w.send(c, "S", 100, 0, 0)
	w.send(s, "S.", 500, 101, 0)
	w.send(c, ".", 101, 501, 0)
	w.send(c, "F.", 101, 501, 0) // held
	w.send(s, ".", 501, 101, 10) // refused by the output
	w.send(s, ".", 511, 102, 0)
	var in bytes.Buffer
	cw, err := capture.NewWriter(&in, "in", w.link, 65535, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range w.frames {
		if err := cw.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := capture.NewReader(&in, "in")
	if err != nil {
		t.Fatal(err)
	}
	// 45 bytes: the 40-byte frames fit, the 50-byte data frame (the
	// 5th) is refused.
	ow, err := capture.NewWriter(&bytes.Buffer{}, "out", r.LinkType(), 45, true)
	if err != nil {
		t.Fatal(err)
	}
	var evs eventList
	set := rules.Compile([]rules.Rule{{
		Name: "hold", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Fin}},
		Action: rules.Action{Type: rules.Delay, Delay: 10 * time.Millisecond}, Probability: 1,
	}})
	counts, err := Run(r, ow, pipeline.New(statetrack.Config{ServerPorts: []uint16{8080}}, set, 1, &evs), nil)
	if err == nil {
		t.Fatal("replay succeeded, want the refused frame's error")
	}
	if counts.Written != 3 || counts.Frames != 5 {
		t.Errorf("%d frames read, %d written; want 5 read, 3 written (the handshake)", counts.Frames, counts.Written)
	}
	for _, e := range evs {
		if e.Reason == events.Released {
			t.Errorf("event %+v: the held FIN was delivered after the failed write", e)
		}
	}
}

// comments is a tap.Writer that keeps the frames and their comments.
type comments struct {
	frames []capture.Frame
	notes  []string
}

func (c *comments) Write(f capture.Frame, comment string) error {
	f.Data = bytes.Clone(f.Data)
	c.frames, c.notes = append(c.frames, f), append(c.notes, comment)
	return nil
}

// TestReplayTapRecordsArrivalsWithComments: the replay shows a tap every
// packet as it arrived, with its verdict, and each copy and RST as it is
// sent, in raw IPv4 and in Ethernet frames: the record has every frame of
// the input at its own time, a comment on each fault, the RSTs of a reset
// right after the packet they replace (built for the link type), and the
// copy of the SYN 3 s later.
func TestReplayTapRecordsArrivalsWithComments(t *testing.T) {
	server := statetrack.Server
	for _, v6 := range []bool{false, true} {
		w := newWire(t, v6)
		w.connection()
		c := &comments{}
		rec := tap.New(c, tap.Options{All: true, Link: w.link})
		res := w.replayTapped(func(*pipeline.Pipeline) execute.Tap { return rec.Queue(0) },
			rules.Rule{Name: "stale-syn", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Syn}, Nth: 1},
				Action: rules.Action{Type: rules.Duplicate, Copies: 1, After: 3 * time.Second}},
			rules.Rule{Name: "slow-syn-ack", Match: rules.Match{Packets: []statetrack.Kind{statetrack.SynAck}},
				Action: rules.Action{Type: rules.Delay, Delay: 300 * time.Millisecond}},
			rules.Rule{Name: "reset-data", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Data}, From: &server},
				Action: rules.Action{Type: rules.Reset, Reset: rules.Both}})
		want := []string{"duplicated by stale-syn (1 copy after 3s)", "held 300ms by slow-syn-ack", "", "",
			"reset by reset-data", "RST injected by reset-data", "RST injected by reset-data", "", "", "", "", "", "copy 1 of 1 by stale-syn"}
		if !slices.Equal(c.notes, want) {
			t.Fatalf("v6 %t: comments\n%q\nwant\n%q", v6, c.notes, want)
		}
		in := 0
		for i, f := range c.frames {
			switch {
			case i == 5 || i == 6: // the RSTs, as the faulted output has them
				if !bytes.Equal(f.Data, res.out[i-2].Data) || !f.TS.Equal(w.frames[4].TS) {
					t.Errorf("v6 %t: RST %d differs from the replay's output", v6, i-4)
				}
			case i == 12:
				if !bytes.Equal(f.Data, w.frames[0].Data) || !f.TS.Equal(w.frames[0].TS.Add(3*time.Second)) {
					t.Errorf("v6 %t: copy at %s, want the SYN 3 s after it", v6, f.TS)
				}
			default:
				if !bytes.Equal(f.Data, w.frames[in].Data) || !f.TS.Equal(w.frames[in].TS) {
					t.Errorf("v6 %t: record %d at %s, want input frame %d as it arrived", v6, i, f.TS, in)
				}
				in++
			}
		}
	}
}

// TestReplayBlackhole: a blackhole to the client lets the client's data
// through and leaves out the server's packets after it, until it heals
// (3 ms later): the server's next packet is written again, and the heal
// is a state event at its time. An RST in the dark direction is left out
// but tracked.
func TestReplayBlackhole(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		w := newWire(t, v6)
		w.send(true, "S", 100, 0, 0)
		w.send(false, "S.", 500, 101, 0)
		w.send(true, ".", 101, 501, 0)
		w.send(true, ".", 101, 501, 10)  // 3 ms: matches, passes
		w.send(false, ".", 501, 111, 0)  // dark
		w.send(false, ".", 501, 111, 20) // dark
		w.send(true, ".", 101, 501, 10)  // a retransmission: passes
		w.send(false, ".", 501, 111, 0)  // 7 ms: healed
		res := w.replay(rules.Rule{Name: "vanish", Match: rules.Match{Packets: []statetrack.Kind{statetrack.Data}, From: new(statetrack.Client)},
			Action: rules.Action{Type: rules.Blackhole, Blackhole: rules.ToClient, For: 3 * time.Millisecond}, Limit: 1})
		segs := res.segments(t, w.link)
		if len(segs) != 6 {
			t.Fatalf("v6 %v: %d frames out, want 8 less the 2 dark ones", v6, len(segs))
		}
		if s := segs[5]; s.Src.Port() != 8080 || s.Len != 0 {
			t.Errorf("v6 %v: last frame %+v, want the server's ACK after the heal", v6, s)
		}
		var kinds []string
		for _, e := range res.events {
			switch {
			case e.Reason == events.Healed:
				kinds = append(kinds, "healed "+e.Dark.Direction())
				if got := e.Time.Sub(res.events[0].Time); got != 6*time.Millisecond {
					t.Errorf("v6 %v: healed %v after the SYN, want 6ms (the match at 3ms + 3ms)", v6, got)
				}
			case e.Rule != "":
				kinds = append(kinds, e.Action.String()+" "+e.Dark.Direction())
			}
		}
		if want := []string{"accept to-client", "blackhole none", "blackhole none", "healed to-client"}; !slices.Equal(kinds, want) {
			t.Errorf("v6 %v: events %q, want %q", v6, kinds, want)
		}
	}
}
