package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/capture"
	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/internal/netlab"
)

// settle is how long a checkpoint waits for the packets in flight (delayed
// ACKs answer within 40 ms) before it counts them and asks ss.
const settle = 300 * time.Millisecond

// recording captures the IPv4 TCP packets crossing one interface of a
// namespace, in both directions, and the checkpoints taken on the way.
type recording struct {
	fd      int
	done    chan struct{}
	stopped atomic.Bool
	mu      sync.Mutex
	frames  []capture.Frame
	// in receives every captured segment that arrived on the interface.
	in     chan segment
	checks []string
}

// segment is a decoded TCP segment of the recording.
type segment struct {
	src, dst netip.AddrPort
	seq, ack uint32
	tcp      layers.TCP
	payload  int
}

// record starts capturing on interface ifname of namespace ns.
func record(ns *netlab.NS, ifname string) (*recording, error) {
	r := &recording{done: make(chan struct{}), in: make(chan segment, 256)}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// ETH_P_ALL: only taps for all protocols see outgoing packets.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket: %w", err)
		}
		r.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: capture on %s: %w", ns.Name, ifname, err)
	}
	go r.loop()
	return r, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// loop reads frames until stop.
func (r *recording) loop() {
	defer close(r.done)
	buf := make([]byte, 1<<17)
	for !r.stopped.Load() {
		n, from, err := unix.Recvfrom(r.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		ll, _ := from.(*unix.SockaddrLinklayer)
		if n < 14 || ll == nil || buf[12] != 0x08 || buf[13] != 0x00 { // IPv4 over Ethernet only
			continue
		}
		ip, seg, ok := decodeSegment(buf[14:n])
		if !ok {
			continue
		}
		r.mu.Lock()
		r.frames = append(r.frames, capture.Frame{Data: ip, TS: time.Now(), CaptureLen: len(ip), OrigLen: len(ip)})
		r.mu.Unlock()
		if ll.Pkttype != unix.PACKET_OUTGOING {
			select {
			case r.in <- seg:
			default:
			}
		}
	}
}

// stop ends the capture.
func (r *recording) stop() {
	if r.stopped.Swap(true) {
		return
	}
	<-r.done
	unix.Close(r.fd)
}

// count returns how many packets were captured so far.
func (r *recording) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.frames)
}

// checkpoint waits for the packets in flight, then notes the ss state of
// each endpoint (namespace, local and remote address) after the packets
// captured so far.
func (r *recording) checkpoint(note string, ends ...end) error {
	time.Sleep(settle)
	var states []string
	for _, e := range ends {
		st, err := ssState(e)
		if err != nil {
			return err
		}
		states = append(states, e.local.Addr().String()+" "+st)
	}
	r.checks = append(r.checks, fmt.Sprintf("after pkt %d (%s): %s", r.count(), note, strings.Join(states, ", ")))
	return nil
}

// end is one kernel endpoint whose state a checkpoint notes.
type end struct {
	ns            *netlab.NS
	local, remote netip.AddrPort
}

// ssState returns the ss state of the socket local<->remote in e's
// namespace, or "CLOSED (no socket)".
func ssState(e end) (string, error) {
	out, err := e.ns.Run("ss", "-tanH", "state", "all")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[3] == e.local.String() && f[4] == e.remote.String() {
			return f[0], nil
		}
	}
	return "CLOSED (no socket)", nil
}

// write stops the capture and writes it as a LINKTYPE_RAW pcap.
func (r *recording) write(path string) error {
	r.stop()
	w, err := capture.Create(path, decode.LinkRaw, 65535, false)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.frames {
		f.TS = f.TS.Truncate(time.Microsecond)
		if err := w.Write(f); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// expect returns the next segment that arrived and satisfies ok, waiting
// at most 3 s.
func (r *recording) expect(what string, ok func(*segment) bool) (segment, error) {
	deadline := time.After(3 * time.Second)
	for {
		select {
		case s := <-r.in:
			if ok(&s) {
				return s, nil
			}
		case <-deadline:
			return segment{}, fmt.Errorf("no %s arrived", what)
		}
	}
}

// drain forgets the segments that arrived so far: the next expect waits
// for a later one.
func (r *recording) drain() {
	for {
		select {
		case <-r.in:
		default:
			return
		}
	}
}

// decodeSegment decodes an IPv4 TCP packet and returns a copy of it with
// its TCP checksum recomputed (lengths kept, so a GSO packet stays whole).
func decodeSegment(raw []byte) (ip []byte, seg segment, ok bool) {
	p := gopacket.NewPacket(raw, layers.LayerTypeIPv4, gopacket.Default)
	v4, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if v4 == nil || tcp == nil {
		return nil, segment{}, false
	}
	ip, err := serialize(v4, tcp, tcp.Payload, false)
	if err != nil {
		return nil, segment{}, false
	}
	src, _ := netip.AddrFromSlice(v4.SrcIP)
	dst, _ := netip.AddrFromSlice(v4.DstIP)
	return ip, segment{
		src: netip.AddrPortFrom(src, uint16(tcp.SrcPort)), dst: netip.AddrPortFrom(dst, uint16(tcp.DstPort)),
		seq: tcp.Seq, ack: tcp.Ack, tcp: *tcp, payload: int(v4.Length) - int(v4.IHL)*4 - int(tcp.DataOffset)*4,
	}, true
}

// serialize builds an IPv4 TCP packet with its checksums computed; with
// fixLengths its length fields too.
func serialize(v4 *layers.IPv4, tcp *layers.TCP, payload []byte, fixLengths bool) ([]byte, error) {
	if err := tcp.SetNetworkLayerForChecksum(v4); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: fixLengths}
	if err := gopacket.SerializeLayers(buf, opts, v4, tcp, gopacket.Payload(payload)); err != nil {
		return nil, err
	}
	return append([]byte(nil), buf.Bytes()...), nil
}
