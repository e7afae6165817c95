package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/tcpchaos/tcpchaos/internal/decode"
	"github.com/tcpchaos/tcpchaos/statetrack"
	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

// readAll reads every frame of r, failing the test on any error but io.EOF.
func readAll(t *testing.T, r *Reader) []Frame {
	t.Helper()
	var fs []Frame
	for {
		f, err := r.Next()
		if err == io.EOF {
			return fs
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		fs = append(fs, f)
	}
}

func openAll(t *testing.T, path string) (*Reader, []Frame) {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return r, readAll(t, r)
}

// TestKernelCaptures reads real Linux captures (LINKTYPE_RAW) copied from
// the shared kernel-captures set and decodes every packet.
func TestKernelCaptures(t *testing.T) {
	counts := map[string]int{ // packets, from MANIFEST.tsv
		"close-on-syn-sent.pcap":                  4,
		"reset_tsval.pcap":                        7,
		"shutdown-rdwr-send-queue-ack-close.pcap": 14,
	}
	p := decode.NewParser()
	for name, want := range counts {
		t.Run(name, func(t *testing.T) {
			r, frames := openAll(t, filepath.Join("testdata", name))
			if r.LinkType() != decode.LinkRaw || r.Snaplen() != 65535 || r.Nanos() {
				t.Errorf("link %s, snaplen %d, nanos %t; want raw(101), 65535, false", r.LinkType(), r.Snaplen(), r.Nanos())
			}
			if len(frames) != want {
				t.Fatalf("%d frames, want %d", len(frames), want)
			}
			for i, f := range frames {
				var seg statetrack.Segment
				if _, err := p.DecodeFrame(f.Data, f.OrigLen, r.LinkType(), &seg); err != nil {
					t.Errorf("frame %d: %v", i+1, err)
				}
				if f.CaptureLen != len(f.Data) || f.OrigLen != len(f.Data) {
					t.Errorf("frame %d: capture length %d, original %d, data %d", i+1, f.CaptureLen, f.OrigLen, len(f.Data))
				}
			}
		})
	}
}

// TestKernelCaptureSegments checks decoded fields against tcpdump -S -tttt.
func TestKernelCaptureSegments(t *testing.T) {
	p := decode.NewParser()
	kernel, peer := netip.MustParseAddr("192.168.0.1"), netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		file  string
		index int
		ts    time.Time
		want  statetrack.Segment
	}{
		// 12:44:40.542810 IP 192.168.0.1.59128 > 192.0.2.1.8080: Flags [S], seq 2709201511, win 65535, length 0
		{"close-on-syn-sent.pcap", 0, time.Date(2026, 11, 21, 12, 44, 40, 542810000, time.UTC), statetrack.Segment{
			Src: netip.AddrPortFrom(kernel, 59128), Dst: netip.AddrPortFrom(peer, 8080),
			Seq: 2709201511, Flags: statetrack.SYN, Window: 65535,
		}},
		// 12:44:46.066704 IP 192.168.0.1.8080 > 192.0.2.1.43047: Flags [FP.], seq 4251220267:4251227267, ack 1, win 1050, length 7000
		// (a GSO super-packet larger than the MTU)
		{"shutdown-rdwr-send-queue-ack-close.pcap", 9, time.Date(2026, 11, 21, 12, 44, 46, 66704000, time.UTC), statetrack.Segment{
			Src: netip.AddrPortFrom(kernel, 8080), Dst: netip.AddrPortFrom(peer, 43047),
			Seq: 4251220267, Ack: seqnum.Value(1), Flags: statetrack.FIN | statetrack.PSH | statetrack.ACK, Window: 1050, Len: 7000,
		}},
	}
	for _, tt := range tests {
		_, frames := openAll(t, filepath.Join("testdata", tt.file))
		f := frames[tt.index]
		if !f.TS.Equal(tt.ts) {
			t.Errorf("%s #%d: time %v, want %v", tt.file, tt.index+1, f.TS, tt.ts)
		}
		var got statetrack.Segment
		if _, err := p.DecodeFrame(f.Data, f.OrigLen, decode.LinkRaw, &got); err != nil {
			t.Fatalf("%s #%d: %v", tt.file, tt.index+1, err)
		}
		if got != tt.want {
			t.Errorf("%s #%d:\ngot  %+v\nwant %+v", tt.file, tt.index+1, got, tt.want)
		}
	}
}

// linkFrames are frames of each supported link type around one IPv4 SYN
// of close-on-syn-sent.pcap.
func linkFrames(t *testing.T) map[decode.LinkType][]byte {
	_, frames := openAll(t, filepath.Join("testdata", "close-on-syn-sent.pcap"))
	ip := frames[0].Data
	cat := func(h ...byte) []byte { return append(h, ip...) }
	macs := []byte{0, 0, 0x5e, 0, 0x53, 1, 0, 0, 0x5e, 0, 0x53, 2}
	return map[decode.LinkType][]byte{
		decode.LinkRaw:       ip,
		decode.LinkIPv4:      ip,
		decode.LinkDLTRaw12:  ip,
		decode.LinkEthernet:  cat(append(macs, 0x81, 0x00, 0, 7, 0x08, 0x00)...),
		decode.LinkLinuxSLL:  cat(0, 0, 0, 1, 0, 6, 0, 0, 0x5e, 0, 0x53, 1, 0, 0, 0x08, 0x00),
		decode.LinkLinuxSLL2: cat(0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 0, 0, 0x5e, 0, 0x53, 1, 0, 0),
		decode.LinkNull:      cat(2, 0, 0, 0),
		decode.LinkLoop:      cat(0, 0, 0, 2),
	}
}

func TestRoundTrip(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	p := decode.NewParser()
	for link, data := range linkFrames(t) {
		for _, nanos := range []bool{false, true} {
			path := filepath.Join(t.TempDir(), "out.pcap")
			w, err := Create(path, link, 262144, nanos)
			if err != nil {
				t.Fatal(err)
			}
			in := []Frame{
				{Data: data, TS: ts, CaptureLen: len(data), OrigLen: len(data)},
				{Data: data[:len(data)-8], TS: ts.Add(time.Second), CaptureLen: len(data) - 8, OrigLen: len(data)},
			}
			for _, f := range in {
				if err := w.Write(f); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			r, out := openAll(t, path)
			if r.LinkType() != link || r.Snaplen() != 262144 || r.Nanos() != nanos {
				t.Errorf("%s nanos=%t: read back link %s, snaplen %d, nanos %t", link, nanos, r.LinkType(), r.Snaplen(), r.Nanos())
			}
			if len(out) != len(in) {
				t.Fatalf("%s: read %d frames, wrote %d", link, len(out), len(in))
			}
			for i := range in {
				want := in[i]
				if !nanos {
					want.TS = want.TS.Truncate(time.Microsecond)
				}
				got := out[i]
				if !bytes.Equal(got.Data, want.Data) || !got.TS.Equal(want.TS) || got.CaptureLen != want.CaptureLen || got.OrigLen != want.OrigLen {
					t.Errorf("%s nanos=%t frame %d: got %v %d/%d, want %v %d/%d", link, nanos, i, got.TS, got.CaptureLen, got.OrigLen, want.TS, want.CaptureLen, want.OrigLen)
				}
			}
			var seg statetrack.Segment
			if _, err := p.DecodeFrame(out[0].Data, out[0].OrigLen, r.LinkType(), &seg); err != nil || seg.Flags != statetrack.SYN || seg.Dst.Port() != 8080 {
				t.Errorf("%s: decoded %+v, %v", link, seg, err)
			}
		}
	}
}

func TestWriterRefuses(t *testing.T) {
	var buf bytes.Buffer
	if _, err := NewWriter(&buf, "x.pcap", decode.LinkRaw, 0, false); err == nil {
		t.Error("snaplen 0 accepted")
	}
	w, err := NewWriter(&buf, "x.pcap", decode.LinkRaw, 100, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]Frame{
		"over snaplen":         {Data: make([]byte, 101), CaptureLen: 101, OrigLen: 101},
		"orig shorter":         {Data: make([]byte, 50), CaptureLen: 50, OrigLen: 40},
		"capture len mismatch": {Data: make([]byte, 50), CaptureLen: 49, OrigLen: 50},
	} {
		if err := w.Write(f); err == nil || !strings.Contains(err.Error(), "write capture x.pcap: packet 1:") {
			t.Errorf("%s: Write = %v", name, err)
		}
	}
}

func TestZeroTimestampIsEpoch(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, "x.pcap", decode.LinkRaw, 100, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(Frame{Data: []byte{0x45}, CaptureLen: 1, OrigLen: 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&buf, "x.pcap")
	if err != nil {
		t.Fatal(err)
	}
	if f := readAll(t, r); len(f) != 1 || !f[0].TS.Equal(time.Unix(0, 0)) {
		t.Errorf("read %+v, want one frame at the epoch", f)
	}
}

// pcapng builds a pcapng file with pcapgo's NgWriter: one interface per
// link type given, one frame on each.
func pcapng(t *testing.T, links ...layers.LinkType) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, links[0])
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range links {
		if i > 0 {
			intf := pcapgo.DefaultNgInterface
			intf.LinkType = l
			if _, err := w.AddInterface(intf); err != nil {
				t.Fatal(err)
			}
		}
		data := []byte{0x45, byte(i), 2, 3}
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)), CaptureLength: 4, Length: 60, InterfaceIndex: i}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPcapng(t *testing.T) {
	r, err := NewReader(bytes.NewReader(pcapng(t, layers.LinkTypeRaw, layers.LinkTypeRaw)), "x.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != decode.LinkRaw || !r.Nanos() {
		t.Errorf("link %s, nanos %t; want raw(101), true", r.LinkType(), r.Nanos())
	}
	fs := readAll(t, r)
	if len(fs) != 2 || !fs[1].TS.Equal(time.Unix(1700000000, 1)) || fs[1].OrigLen != 60 || fs[1].Data[1] != 1 {
		t.Errorf("read %+v", fs)
	}
}

func TestPcapngLinkTypeAbove255(t *testing.T) {
	// pcapgo holds link types in 8 bits: write 276&0xff and patch the
	// interface description block to the real value.
	b := pcapng(t, layers.LinkType(decode.LinkLinuxSLL2&0xff))
	idb := int(binary.LittleEndian.Uint32(b[4:8])) // the section header's length
	if binary.LittleEndian.Uint32(b[idb:]) != 1 {
		t.Fatal("no interface description after the section header")
	}
	binary.LittleEndian.PutUint16(b[idb+8:], uint16(decode.LinkLinuxSLL2))
	r, err := NewReader(bytes.NewReader(b), "sll2.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != decode.LinkLinuxSLL2 {
		t.Errorf("link %s, want linux-sll2(276)", r.LinkType())
	}
}

func TestPcapngMixedLinkTypes(t *testing.T) {
	r, err := NewReader(bytes.NewReader(pcapng(t, layers.LinkTypeRaw, layers.LinkTypeEthernet)), "mixed.pcapng")
	if err == nil {
		_, err = r.Next()
	}
	if err == nil || !strings.Contains(err.Error(), "mixed link types are not supported") || !strings.Contains(err.Error(), "mixed.pcapng") {
		t.Fatalf("got %v, want a mixed link types error naming the file", err)
	}
}

func TestGzip(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "close-on-syn-sent.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	if _, err := gz.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&buf, "x.pcap.gz")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(readAll(t, r)); n != 4 {
		t.Errorf("%d frames, want 4", n)
	}
}

func TestReadErrors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "reset_tsval.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	ng := pcapng(t, layers.LinkTypeRaw, layers.LinkTypeRaw)
	tests := []struct {
		name, file string
		data       []byte
		want       string
	}{
		{"empty", "e.pcap", nil, "read capture e.pcap: file header: unexpected EOF"},
		{"not a capture", "t.txt", []byte("hello, world, this is not a capture"), "read capture t.txt: not a pcap or pcapng file (magic 68656c6c)"},
		{"pcap header cut", "h.pcap", raw[:20], "read capture h.pcap: file header: unexpected EOF"},
		{"record header cut", "r.pcap", raw[:24+8], "read capture r.pcap: packet 1: unexpected EOF"},
		{"packet data cut", "d.pcap", raw[:len(raw)-1], "read capture d.pcap: packet 7: unexpected EOF"},
		{"pcapng block cut", "n.pcapng", ng[:len(ng)-1], "read capture n.pcapng: packet 2: unexpected EOF"},
		{"pcapng header cut", "s.pcapng", ng[:10], "read capture s.pcapng: pcapng header: unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tt.data), tt.file)
			for err == nil {
				_, err = r.Next()
			}
			if err.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", err, tt.want)
			}
			if errors.Is(err, io.EOF) {
				t.Error("a damaged file ended like a complete one")
			}
			if r != nil {
				if _, again := r.Next(); again != err {
					t.Errorf("Next after an error = %v, want the same error", again)
				}
			}
		})
	}
}

func TestOpenMissing(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "none.pcap")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open = %v, want ErrNotExist", err)
	}
}

func FuzzReader(f *testing.F) {
	for _, name := range []string{"close-on-syn-sent.pcap", "reset_tsval.pcap"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		f.Fatal(err)
	}
	if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 2), CaptureLength: 3, Length: 3}, []byte{1, 2, 3}); err != nil {
		f.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		for range 1 << 16 { // bounded: a gzip-compressed input may hold many frames
			fr, err := r.Next()
			if err != nil {
				return
			}
			if fr.CaptureLen != len(fr.Data) || fr.CaptureLen > fr.OrigLen {
				t.Fatalf("frame with %d bytes, capture length %d, original %d", len(fr.Data), fr.CaptureLen, fr.OrigLen)
			}
		}
	})
}
