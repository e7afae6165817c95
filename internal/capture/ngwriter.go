package capture

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/tcpchaos/tcpchaos/internal/decode"
)

// pcapng block types and option codes (draft-ietf-opsawg-pcapng) besides
// those the Reader knows.
const (
	ngEnhancedPacket = 6
	ngOptEnd         = 0
	ngOptComment     = 1      // opt_comment
	ngOptUserAppl    = 4      // shb_userappl
	ngOptTSResol     = 9      // if_tsresol
	ngTSResolNanos   = 9      // 10^-9 s
	ngMaxOption      = 0xffff // an option's length has 16 bits
)

// NgWriter writes frames with a comment each (the pcapng opt_comment that
// Wireshark shows as the packet's comment) to a pcapng file of one
// interface, little-endian, with nanosecond timestamps. pcapgo's NgWriter
// writes no per-packet options.
type NgWriter struct {
	output
	snaplen uint32
	block   []byte // the block being built, reused
	opts    bool   // the block has options
}

// CreateNg creates (or truncates) the pcapng file at path for frames of
// link type link cut at snaplen bytes (0: not cut), written by app (the
// section's shb_userappl). Close the NgWriter to flush it.
func CreateNg(path string, link decode.LinkType, snaplen uint32, app string) (*NgWriter, error) {
	return create(path, func(f io.Writer) (*NgWriter, error) { return NewNgWriter(f, path, link, snaplen, app) })
}

// NewNgWriter writes a pcapng section header and interface description to
// dst and returns an NgWriter for its frames; name names dst in errors.
// Close flushes the NgWriter but does not close dst.
func NewNgWriter(dst io.Writer, name string, link decode.LinkType, snaplen uint32, app string) (*NgWriter, error) {
	if snaplen > MaxSnaplen {
		return nil, fmt.Errorf("create capture %s: snaplen %d out of range 0..%d", name, snaplen, MaxSnaplen)
	}
	w := &NgWriter{output: output{name: name, buf: bufio.NewWriter(dst)}, snaplen: snaplen}
	w.start(ngSectionHeader)
	w.u32(ngByteOrderMagic)
	w.u32(1) // version 1.0: major 1, minor 0
	w.u32(^uint32(0))
	w.u32(^uint32(0)) // section length: not given
	w.option(ngOptUserAppl, []byte(app))
	if err := w.end(); err != nil {
		return nil, fmt.Errorf("create capture %s: %w", name, err)
	}
	w.start(ngInterface)
	w.u32(uint32(link)) // and 16 reserved bits
	w.u32(snaplen)
	w.option(ngOptTSResol, []byte{ngTSResolNanos})
	if err := w.end(); err != nil {
		return nil, fmt.Errorf("create capture %s: %w", name, err)
	}
	return w, nil
}

// Write appends f with comment (none when empty; cut after 65,535 bytes,
// an option's longest value). Its capture length is
// len(f.Data), which must match f.CaptureLen and not exceed the snaplen
// nor f.OrigLen. A zero f.TS is written as the Unix epoch.
func (w *NgWriter) Write(f Frame, comment string) error {
	switch {
	case w.snaplen > 0 && len(f.Data) > int(w.snaplen):
		return w.fail(fmt.Errorf("%d bytes exceed the snaplen %d", len(f.Data), w.snaplen))
	case len(f.Data) != f.CaptureLen || f.CaptureLen > f.OrigLen:
		return w.fail(fmt.Errorf("%d bytes do not agree with capture length %d and original length %d", len(f.Data), f.CaptureLen, f.OrigLen))
	}
	var ts uint64
	if !f.TS.IsZero() {
		ts = uint64(f.TS.UnixNano())
	}
	w.start(ngEnhancedPacket)
	w.u32(0) // interface 0
	w.u32(uint32(ts >> 32))
	w.u32(uint32(ts))
	w.u32(uint32(len(f.Data)))
	w.u32(uint32(f.OrigLen))
	w.block = appendPadded(w.block, f.Data)
	if comment != "" {
		w.option(ngOptComment, []byte(cutUTF8(comment, ngMaxOption)))
	}
	if err := w.end(); err != nil {
		return w.fail(err)
	}
	w.n++
	return nil
}

// start begins a block of type typ: its type and a length that end fills
// in.
func (w *NgWriter) start(typ uint32) {
	w.block, w.opts = w.block[:0], false
	w.u32(typ)
	w.u32(0)
}

func (w *NgWriter) u32(v uint32) { w.block = binary.LittleEndian.AppendUint32(w.block, v) }

// option appends an option with value v, padded to 32 bits.
func (w *NgWriter) option(code uint16, v []byte) {
	w.u32(uint32(code) | uint32(len(v))<<16)
	w.block = appendPadded(w.block, v)
	w.opts = true
}

// end closes the block's options (when it has any), sets its length at
// both ends and writes it.
func (w *NgWriter) end() error {
	if w.opts {
		w.u32(ngOptEnd)
	}
	n := uint32(len(w.block) + 4)
	binary.LittleEndian.PutUint32(w.block[4:], n)
	w.u32(n)
	_, err := w.buf.Write(w.block)
	return err
}

// appendPadded appends v and zeros up to a multiple of 4 bytes.
func appendPadded(b, v []byte) []byte {
	b = append(b, v...)
	return append(b, make([]byte, -len(v)&3)...)
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// split a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
