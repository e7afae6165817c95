package capture

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/pcapgo"

	"github.com/tcpchaos/tcpchaos/internal/decode"
)

// Writer writes frames to a pcap file in the order given.
type Writer struct {
	output
	pw      *pcapgo.Writer
	snaplen uint32
}

// output is a capture file being written: pcap (Writer) or pcapng
// (NgWriter).
type output struct {
	name string
	file io.WriteCloser // nil when the writer does not own its destination
	buf  *bufio.Writer
	n    int // frames written
}

// Create creates (or truncates) the pcap file at path for frames of link
// type link cut at snaplen bytes; nanos selects nanosecond timestamps
// (otherwise microseconds, the classic format). Close the Writer to flush
// it.
func Create(path string, link decode.LinkType, snaplen uint32, nanos bool) (*Writer, error) {
	return create(path, func(f io.Writer) (*Writer, error) { return NewWriter(f, path, link, snaplen, nanos) })
}

// create creates the file at path and a writer on it with newWriter, and
// writes out the file's headers at once, so that a file that takes nothing
// (a full disk) fails here; the writer's Close closes the file.
func create[W interface {
	own(io.WriteCloser)
	flush() error
}](path string, newWriter func(io.Writer) (W, error)) (W, error) {
	var none W
	f, err := os.Create(path)
	if err != nil {
		return none, fmt.Errorf("create capture: %w", err)
	}
	w, err := newWriter(f)
	if err == nil {
		if err = w.flush(); err != nil {
			err = fmt.Errorf("create capture %s: %w", path, err)
		}
	}
	if err != nil {
		f.Close()
		return none, err
	}
	w.own(f)
	return w, nil
}

func (w *output) own(f io.WriteCloser) { w.file = f }

func (w *output) flush() error { return w.buf.Flush() }

// NewWriter writes a pcap file header to dst and returns a Writer for its
// frames; name names dst in errors. Close flushes the Writer but does not
// close dst.
func NewWriter(dst io.Writer, name string, link decode.LinkType, snaplen uint32, nanos bool) (*Writer, error) {
	if snaplen == 0 || snaplen > MaxSnaplen {
		return nil, fmt.Errorf("create capture %s: snaplen %d out of range 1..%d", name, snaplen, MaxSnaplen)
	}
	w := &Writer{output: output{name: name, buf: bufio.NewWriter(dst)}, snaplen: snaplen}
	newWriter := pcapgo.NewWriter
	if nanos {
		newWriter = pcapgo.NewWriterNanos
	}
	// pcapgo takes the link type as 8 bits: let it write the header with
	// none, then put in the full value.
	var hdr bytes.Buffer
	if err := newWriter(&hdr).WriteFileHeader(snaplen, 0); err != nil {
		return nil, fmt.Errorf("create capture %s: %w", name, err)
	}
	b := hdr.Bytes()
	binary.LittleEndian.PutUint32(b[20:24], uint32(link))
	if _, err := w.buf.Write(b); err != nil {
		return nil, fmt.Errorf("create capture %s: %w", name, err)
	}
	w.pw = newWriter(w.buf)
	return w, nil
}

// Write appends f to the file. Its capture length is len(f.Data), which
// must match f.CaptureLen and not exceed the snaplen nor f.OrigLen. A zero
// f.TS is written as the Unix epoch (pcapgo would write the current time).
func (w *Writer) Write(f Frame) error {
	if len(f.Data) > int(w.snaplen) {
		return w.fail(fmt.Errorf("%d bytes exceed the snaplen %d", len(f.Data), w.snaplen))
	}
	ts := f.TS
	if ts.IsZero() {
		ts = time.Unix(0, 0)
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: f.CaptureLen, Length: f.OrigLen}
	if err := w.pw.WritePacket(ci, f.Data); err != nil {
		return w.fail(err)
	}
	w.n++
	return nil
}

func (w *output) fail(err error) error {
	return fmt.Errorf("write capture %s: packet %d: %w", w.name, w.n+1, err)
}

// Close flushes the frames written and closes the file opened by Create
// (or CreateNg).
func (w *output) Close() error {
	err := w.buf.Flush()
	if w.file != nil {
		if cerr := w.file.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("close capture %s: %w", w.name, err)
	}
	return nil
}
