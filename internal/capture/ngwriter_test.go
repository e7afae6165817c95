package capture

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpchaos/tcpchaos/internal/decode"
)

// ngComments returns the opt_comment of each packet block of a
// little-endian pcapng file ("" for none): a reader of its own, since
// pcapgo's NgReader drops packet options.
func ngComments(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for len(b) > 0 {
		if len(b) < 12 {
			t.Fatalf("%d bytes left, not a block", len(b))
		}
		typ, n := binary.LittleEndian.Uint32(b), int(binary.LittleEndian.Uint32(b[4:]))
		if n < 12 || n%4 != 0 || n > len(b) || binary.LittleEndian.Uint32(b[n-4:]) != uint32(n) {
			t.Fatalf("block type %d: bad length %d (%d bytes left)", typ, n, len(b))
		}
		if typ == ngEnhancedPacket {
			body := b[8 : n-4]
			capLen := int(binary.LittleEndian.Uint32(body[12:]))
			opts := body[20+(capLen+3)&^3:]
			comment := ""
			for len(opts) >= 4 {
				code, l := binary.LittleEndian.Uint16(opts), int(binary.LittleEndian.Uint16(opts[2:]))
				if code == ngOptEnd {
					break
				}
				if code == ngOptComment {
					comment = string(opts[4 : 4+l])
				}
				opts = opts[4+(l+3)&^3:]
			}
			out = append(out, comment)
		}
		b = b[n:]
	}
	return out
}

func TestNgWriterComments(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	data := linkFrames(t)[decode.LinkRaw]
	in := []Frame{
		{Data: data, TS: ts, CaptureLen: len(data), OrigLen: len(data)},
		{Data: data[:len(data)-7], TS: ts.Add(time.Second), CaptureLen: len(data) - 7, OrigLen: len(data)},
		{Data: data, TS: ts.Add(2 * time.Second), CaptureLen: len(data), OrigLen: len(data)},
	}
	comments := []string{"dropped by lose-first-syn", "", "copy 1 of 1 by stale-syn"}
	path := filepath.Join(t.TempDir(), "out.pcapng")
	w, err := CreateNg(path, decode.LinkRaw, 256, "tcpchaos test")
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range in {
		if err := w.Write(f, comments[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	r, out := openAll(t, path) // through pcapgo's NgReader
	if r.LinkType() != decode.LinkRaw || r.Snaplen() != 256 || !r.Nanos() {
		t.Errorf("read back link %s, snaplen %d, nanos %t", r.LinkType(), r.Snaplen(), r.Nanos())
	}
	if len(out) != len(in) {
		t.Fatalf("read %d frames, wrote %d", len(out), len(in))
	}
	for i, want := range in {
		got := out[i]
		if !bytes.Equal(got.Data, want.Data) || !got.TS.Equal(want.TS) || got.CaptureLen != want.CaptureLen || got.OrigLen != want.OrigLen {
			t.Errorf("frame %d: got %v %d/%d, want %v %d/%d", i, got.TS, got.CaptureLen, got.OrigLen, want.TS, want.CaptureLen, want.OrigLen)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := ngComments(t, b); strings.Join(got, "|") != strings.Join(comments, "|") {
		t.Errorf("comments %q, want %q", got, comments)
	}

	// tshark, when installed (scripts/test-deps installs it), is an
	// independent reader: it must show the same comments.
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Log("tshark not installed: not cross-checked")
		return
	}
	var stderr bytes.Buffer
	cmd := exec.Command("tshark", "-r", path, "-T", "fields", "-e", "frame.comment")
	cmd.Stderr = &stderr
	ts2, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.Bytes())
	}
	if got := strings.Split(strings.TrimSuffix(string(ts2), "\n"), "\n"); strings.Join(got, "|") != strings.Join(comments, "|") {
		t.Errorf("tshark reads comments %q, want %q", got, comments)
	}
}

func TestNgWriterRefuses(t *testing.T) {
	if _, err := NewNgWriter(&bytes.Buffer{}, "x", decode.LinkRaw, MaxSnaplen+1, ""); err == nil || !strings.Contains(err.Error(), "snaplen") {
		t.Errorf("snaplen too large: %v", err)
	}
	w, err := NewNgWriter(&bytes.Buffer{}, "x", decode.LinkRaw, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte{1, 2, 3, 4, 5}
	if err := w.Write(Frame{Data: data, CaptureLen: 5, OrigLen: 5}, ""); err == nil || !strings.Contains(err.Error(), "x: packet 1: 5 bytes exceed the snaplen 4") {
		t.Errorf("frame over the snaplen: %v", err)
	}
	if err := w.Write(Frame{Data: data[:3], CaptureLen: 3, OrigLen: 2}, ""); err == nil || !strings.Contains(err.Error(), "do not agree") {
		t.Errorf("capture length over the original length: %v", err)
	}
}

// TestNgWriterCutsALongComment: an option's length has 16 bits: a comment
// longer than 65,535 bytes (a rule's name is any string) is cut there, at
// a character's boundary, and the file stays readable.
func TestNgWriterCutsALongComment(t *testing.T) {
	var b bytes.Buffer
	w, err := NewNgWriter(&b, "x", decode.LinkRaw, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte{0x45}
	long := "é" + strings.Repeat("ü", 40000) // 80,002 bytes
	if err := w.Write(Frame{Data: data, CaptureLen: 1, OrigLen: 1}, long); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(Frame{Data: data, CaptureLen: 1, OrigLen: 1}, "next"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := ngComments(t, b.Bytes())
	if len(got) != 2 || len(got[0]) != 65534 || !strings.HasPrefix(long, got[0]) || got[1] != "next" {
		t.Errorf("read back %d comments, the first of %d bytes, want the long one cut at 65,534 bytes and %q", len(got), len(got[0]), "next")
	}
}

// TestCreateFailsOnAFullDisk: Create and CreateNg write the file's headers
// at once, so that a destination that takes nothing (a full disk:
// /dev/full) fails there, before a run installs anything, and not at the
// first frames.
func TestCreateFailsOnAFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full") // Linux has it
	}
	if _, err := CreateNg("/dev/full", decode.LinkRaw, 0, "tcpchaos"); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("CreateNg on /dev/full: %v, want no space left", err)
	}
	if _, err := Create("/dev/full", decode.LinkRaw, 256, true); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("Create on /dev/full: %v, want no space left", err)
	}
}
