package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/decode"
)

// goBench is one group of Go benchmarks of the offline figures.
type goBench struct {
	pkg, pattern string
	// perOp is how many packets one op handles (0: not a per-packet
	// benchmark).
	perOp float64
}

// goBenches are run on one core (-cpu 1) with -benchmem.
var goBenches = []goBench{
	{"./internal/pipeline", "^BenchmarkPipeline$", 2},
	{"./statetrack", "^BenchmarkObserveEstablished$", 2},
	{"./statetrack", "^BenchmarkMillionConnections$", 0},
	{"./rules", "^BenchmarkDecide$", 1},
	{"./internal/decode", "^BenchmarkDecode$", 1},
	// The live path without the kernel, with and without the verdict
	// histogram that --metrics turns on, and one observation of it.
	{"./nfq", "^BenchmarkSteadyState$", 1},
	{"./nfq", "^BenchmarkLatencyObserve$", 1},
}

// benchLine is one result line of `go test -bench`.
type benchLine struct {
	name    string
	metrics map[string]float64 // by unit: "ns/op", "B/op", "allocs/op", "bytes/conn", …
}

// benchLineRE matches "BenchmarkName[-N]  <iterations>  <value unit>...".
var benchLineRE = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// parseBenchOutput returns the result lines of `go test -bench` output in
// order; a name repeats once per -count.
func parseBenchOutput(out string) ([]benchLine, error) {
	var lines []benchLine
	for line := range strings.Lines(out) {
		m := benchLineRE.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		f := strings.Fields(m[3])
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("parse benchmark line %q: values and units do not pair up", line)
		}
		bl := benchLine{name: m[1], metrics: make(map[string]float64)}
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("parse benchmark line %q: %w", line, err)
			}
			bl.metrics[f[i+1]] = v
		}
		lines = append(lines, bl)
	}
	return lines, nil
}

// offlineBench is one benchmark's figures, medians over -count runs.
type offlineBench struct {
	name  string
	perOp float64
	// runs are the metric values by unit, one per run.
	runs map[string][]float64
}

// runGoBenches runs goBenches count times each (benchtime as go test's
// -benchtime) and groups the results by benchmark name, in order.
func runGoBenches(ctx context.Context, root string, count int, benchtime string) ([]offlineBench, error) {
	var res []offlineBench
	index := make(map[string]int)
	for _, gb := range goBenches {
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", gb.pattern, "-benchmem", "-cpu", "1",
			"-count", strconv.Itoa(count), "-benchtime", benchtime, gb.pkg)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("go test -bench %s %s: %w\n%s", gb.pattern, gb.pkg, err, out)
		}
		lines, err := parseBenchOutput(string(out))
		if err != nil {
			return nil, err
		}
		if len(lines) == 0 {
			return nil, fmt.Errorf("go test -bench %s %s: no benchmark ran\n%s", gb.pattern, gb.pkg, out)
		}
		for _, l := range lines {
			i, ok := index[l.name]
			if !ok {
				i = len(res)
				index[l.name] = i
				res = append(res, offlineBench{name: l.name, perOp: gb.perOp, runs: make(map[string][]float64)})
			}
			for unit, v := range l.metrics {
				res[i].runs[unit] = append(res[i].runs[unit], v)
			}
		}
	}
	return res, nil
}

// replayRun is one timed `tcpchaos replay`.
type replayRun struct {
	frames  int64
	seconds float64
}

// synthConn is the packets of one synthetic connection, client first:
// handshake, a window update, six request/response exchanges with their
// ACKs, and a four-way close — 20 packets.
const synthPerConn = 20

// synthCapture writes a raw-IPv4 capture of at least packets packets to
// path: connections of synthPerConn packets from distinct client ports to
// 198.19.0.1:8080, run in waves of wave connections whose packets
// interleave, one microsecond apart.
func synthCapture(path string, packets, wave int) (int, error) {
	w, err := capture.Create(path, decode.LinkRaw, 65535, true)
	if err != nil {
		return 0, err
	}
	server := netip.MustParseAddrPort("198.19.0.1:8080")
	conns := (packets + synthPerConn - 1) / synthPerConn
	ts := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	buf := gopacket.NewSerializeBuffer()
	payload := make([]byte, 100)
	n := 0
	for first := 0; first < conns; first += wave {
		last := min(first+wave, conns)
		for step := range synthPerConn {
			for c := first; c < last; c++ {
				client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(c >> 16), byte(c >> 8)}), uint16(10000+c&0xff))
				seg := synthSegment(step)
				src, dst := client, server
				if !seg.fromClient {
					src, dst = server, client
				}
				if err := serializeTCP(buf, src, dst, seg, payload[:seg.len]); err != nil {
					w.Close()
					return n, err
				}
				data := buf.Bytes()
				if err := w.Write(capture.Frame{Data: data, TS: ts, CaptureLen: len(data), OrigLen: len(data)}); err != nil {
					w.Close()
					return n, err
				}
				ts = ts.Add(time.Microsecond)
				n++
			}
		}
	}
	return n, w.Close()
}

// synthSeg is one packet of a synthetic connection.
type synthSeg struct {
	fromClient         bool
	syn, ack, fin, psh bool
	seq, ackNum        uint32
	len                int
}

// synthSegment returns packet step of a synthetic connection. The client's
// ISN is 1000, the server's 5000; each exchange carries 100 bytes.
func synthSegment(step int) synthSeg {
	const cISN, sISN, size = 1000, 5000, 100
	switch {
	case step == 0:
		return synthSeg{fromClient: true, syn: true, seq: cISN}
	case step == 1:
		return synthSeg{syn: true, ack: true, seq: sISN, ackNum: cISN + 1}
	case step == 2 || step == 3: // handshake ACK, then a window update
		return synthSeg{fromClient: true, ack: true, seq: cISN + 1, ackNum: sISN + 1}
	case step < 16: // exchanges: request (odd k) or response (even k), then its ACK
		k := (step - 4) / 2
		reqs, resps := uint32((k+1)/2), uint32(k/2) // exchanges before this one
		c, s := cISN+1+reqs*size, sISN+1+resps*size
		fromClient := k%2 == 0
		if step%2 == 0 { // the data
			if fromClient {
				return synthSeg{fromClient: true, ack: true, psh: true, seq: c, ackNum: s, len: size}
			}
			return synthSeg{ack: true, psh: true, seq: s, ackNum: c, len: size}
		}
		if fromClient {
			return synthSeg{ack: true, seq: s, ackNum: c + size}
		}
		return synthSeg{fromClient: true, ack: true, seq: c, ackNum: s + size}
	}
	c, s := uint32(cISN+1+3*size), uint32(sISN+1+3*size)
	switch step {
	case 16:
		return synthSeg{fromClient: true, fin: true, ack: true, seq: c, ackNum: s}
	case 17:
		return synthSeg{ack: true, seq: s, ackNum: c + 1}
	case 18:
		return synthSeg{fin: true, ack: true, seq: s, ackNum: c + 1}
	}
	return synthSeg{fromClient: true, ack: true, seq: c + 1, ackNum: s + 1}
}

// serializeTCP builds an IPv4/TCP packet into buf, checksums filled in.
func serializeTCP(buf gopacket.SerializeBuffer, src, dst netip.AddrPort, s synthSeg, payload []byte) error {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: s.seq, Ack: s.ackNum, SYN: s.syn, ACK: s.ack, FIN: s.fin, PSH: s.psh, Window: 65535,
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		return fmt.Errorf("build synthetic packet: %w", err)
	}
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, tcp, gopacket.Payload(payload)); err != nil {
		return fmt.Errorf("build synthetic packet: %w", err)
	}
	return nil
}

// replayedRE matches replay's "replayed X: N frames" line.
var replayedRE = regexp.MustCompile(`replayed .*: (\d+) frames`)

// timeReplay runs `tcpchaos replay` over pcap with args added and times it.
// The config's expectations are about real stacks' reactions, which a
// synthetic capture has none of: their failing (exit status 3) is not an
// error of the measurement.
func timeReplay(ctx context.Context, tcpchaos, cfg, pcap string, args ...string) (replayRun, error) {
	cmd := exec.CommandContext(ctx, tcpchaos, append([]string{"replay", "-c", cfg, "--pcap", pcap}, args...)...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		err = nil
	}
	if err != nil {
		return replayRun{}, fmt.Errorf("tcpchaos replay: %w\n%s", err, out)
	}
	m := replayedRE.FindSubmatch(out)
	if m == nil {
		return replayRun{}, fmt.Errorf("tcpchaos replay: no \"replayed\" line in\n%s", out)
	}
	frames, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return replayRun{frames: frames, seconds: took.Seconds()}, nil
}

// replayFigures is the replay measurement: packets/s without output and
// writing the faulted capture to /dev/null, one value per round.
type replayFigures struct {
	packets, conns int
	plain, out     []float64
}

// runReplay generates the synthetic capture in a temporary directory and
// times rounds replays of it each way.
func runReplay(ctx context.Context, o options) (replayFigures, error) {
	var f replayFigures
	dir, err := os.MkdirTemp("", "tcpchaos-bench-replay-")
	if err != nil {
		return f, fmt.Errorf("replay: %w", err)
	}
	defer os.RemoveAll(dir)
	pcap := filepath.Join(dir, "synthetic.pcap")
	if f.packets, err = synthCapture(pcap, o.replayPackets, 1000); err != nil {
		return f, err
	}
	f.conns = f.packets / synthPerConn
	cfg := filepath.Join(o.root, "configs", "lost-final-ack.yaml")
	for range o.rounds {
		for _, args := range [][]string{nil, {"--out", os.DevNull}} {
			r, err := timeReplay(ctx, o.tcpchaos, cfg, pcap, args...)
			if err != nil {
				return f, err
			}
			if r.frames != int64(f.packets) {
				return f, fmt.Errorf("replay: read %d frames of %d", r.frames, f.packets)
			}
			pps := float64(r.frames) / r.seconds
			if args == nil {
				f.plain = append(f.plain, pps)
			} else {
				f.out = append(f.out, pps)
			}
		}
	}
	return f, nil
}
