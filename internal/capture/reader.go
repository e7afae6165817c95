// Package capture reads pcap and pcapng files frame by frame and writes
// pcap files, on top of gopacket's pcapgo.
package capture

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/pcapgo"

	"github.com/tcpchaos/tcpchaos/internal/decode"
)

// MaxSnaplen bounds the capture length of a frame. A pcap file header
// asking for more (or for 0, as some tools write) is read as if it said
// MaxSnaplen, as libpcap does with its own, smaller bound; it leaves room
// for BIG TCP super-packets (up to 512 KiB).
const MaxSnaplen = 1 << 20

// Frame is one captured frame. Data is owned by the Frame: a Reader never
// reuses it.
type Frame struct {
	Data []byte
	// TS is the capture time.
	TS time.Time
	// CaptureLen is len(Data); OrigLen is the frame's length on the wire,
	// at least CaptureLen (more when the capture was cut at the snaplen).
	CaptureLen, OrigLen int
}

// Reader reads the frames of one pcap or pcapng file, in file order.
// Gzip-compressed files are read transparently.
//
// A pcapng file may describe several interfaces; they must all have the
// same link type (that of the first), which LinkType reports: a file that
// mixes link types is refused with an error at the first block that shows
// it. Per-packet link types would make every consumer handle them, for
// files that tcpdump itself cannot write.
type Reader struct {
	name    string
	file    io.Closer // nil when the Reader does not own its source
	read    func() ([]byte, gopacket.CaptureInfo, error)
	link    decode.LinkType
	snaplen uint32
	nanos   bool
	ng      *ngLinks // pcapng only
	n       int      // frames read
	err     error    // sticky: the error that ended the reading
}

// Open opens the capture file at path. Close the Reader when done.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	r, err := NewReader(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.file = f
	return r, nil
}

// NewReader reads a capture from src; name names it in errors. The format
// (pcap in either byte order and timestamp precision, or pcapng) is
// detected from the magic number.
func NewReader(src io.Reader, name string) (*Reader, error) {
	r := &Reader{name: name}
	if err := r.init(src); err != nil {
		return nil, fmt.Errorf("read capture %s: %w", name, err)
	}
	return r, nil
}

const (
	gzipMagic    = "\x1f\x8b"
	pcapngMagic  = "\x0a\x0d\x0d\x0a" // section header block type, the same in both byte orders
	pcapHeader   = 24
	pcapMicroLE  = "\xd4\xc3\xb2\xa1"
	pcapMicroBE  = "\xa1\xb2\xc3\xd4"
	pcapNanoLE   = "\x4d\x3c\xb2\xa1"
	pcapNanoBE   = "\xa1\xb2\x3c\x4d"
	linkTypeMask = 0xffff // the pcap header's link type field also holds FCS bits above
)

func (r *Reader) init(src io.Reader) error {
	br := bufio.NewReader(src)
	if b, err := br.Peek(len(gzipMagic)); err == nil && string(b) == gzipMagic {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		br = bufio.NewReader(gz)
	}
	magic, err := br.Peek(4)
	if err != nil {
		return fmt.Errorf("file header: %w", noEOF(err))
	}
	if string(magic) == pcapngMagic {
		return r.initNg(br)
	}
	return r.initPcap(br)
}

func (r *Reader) initPcap(br *bufio.Reader) error {
	hdr, err := br.Peek(pcapHeader)
	if err != nil {
		return fmt.Errorf("file header: %w", noEOF(err))
	}
	var order binary.ByteOrder
	switch m := string(hdr[:4]); m {
	case pcapMicroLE, pcapNanoLE:
		order, r.nanos = binary.LittleEndian, m == pcapNanoLE
	case pcapMicroBE, pcapNanoBE:
		order, r.nanos = binary.BigEndian, m == pcapNanoBE
	default:
		return fmt.Errorf("not a pcap or pcapng file (magic %x)", hdr[:4])
	}
	// pcapgo keeps the link type in 8 bits: take it from the header.
	r.link = decode.LinkType(order.Uint32(hdr[20:24]) & linkTypeMask)
	pr, err := pcapgo.NewReader(br)
	if err != nil {
		return fmt.Errorf("pcap header: %w", err)
	}
	r.snaplen = pr.Snaplen()
	if r.snaplen == 0 || r.snaplen > MaxSnaplen {
		r.snaplen = MaxSnaplen
		pr.SetSnaplen(MaxSnaplen)
	}
	// Not pr.Resolution(): pcapgo v1.1.19 has it the wrong way round.
	r.read = pr.ReadPacketData
	return nil
}

func (r *Reader) initNg(br *bufio.Reader) error {
	r.ng = &ngLinks{}
	var nr *pcapgo.NgReader
	err := recovered(func() (err error) {
		nr, err = pcapgo.NewNgReader(io.TeeReader(br, r.ng), pcapgo.NgReaderOptions{ErrorOnMismatchingLinkType: true})
		return err
	})
	if err != nil {
		return fmt.Errorf("pcapng header: %w", noEOF(err))
	}
	if err := r.ng.check(); err != nil {
		return err
	}
	r.link = r.ng.links[0]
	iface, err := nr.Interface(0)
	if err != nil {
		return fmt.Errorf("pcapng interface: %w", err)
	}
	r.snaplen = iface.SnapLength
	if r.snaplen == 0 || r.snaplen > MaxSnaplen {
		r.snaplen = MaxSnaplen
	}
	r.nanos = nr.Resolution().ToDuration() < time.Microsecond
	r.read = nr.ReadPacketData
	return nil
}

// recovered calls fn and turns a panic into an error: pcapgo v1.1.19
// panics on some malformed pcapng input (a timestamp resolution option of
// 10^-20 divides by zero, short options are sliced past their end).
func recovered(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed capture: %v", p)
		}
	}()
	return fn()
}

// noEOF turns the io.EOF of a file that ends inside a header into
// io.ErrUnexpectedEOF: only a file ending between frames ends cleanly.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Next returns the next frame. At the end of the file it returns io.EOF
// (unwrapped); any other error names the file and the frame's number
// (from 1). Either ends the reading: later calls return the same error.
func (r *Reader) Next() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	var (
		data []byte
		ci   gopacket.CaptureInfo
	)
	err := recovered(func() (err error) {
		data, ci, err = r.read()
		return err
	})
	if err == nil && r.ng != nil {
		err = r.ng.check()
	}
	if err == nil && ci.CaptureLength > MaxSnaplen {
		err = fmt.Errorf("capture length %d exceeds %d", ci.CaptureLength, MaxSnaplen)
	}
	if err == nil && ci.CaptureLength > ci.Length {
		err = fmt.Errorf("capture length %d exceeds the original length %d", ci.CaptureLength, ci.Length)
	}
	if err != nil {
		if err == io.EOF && len(data) == 0 && !r.ng.midBlock() {
			r.err = io.EOF
		} else {
			if errors.Is(err, pcapgo.ErrNgLinkTypeMismatch) {
				err = fmt.Errorf("%w: mixed link types are not supported", err)
			}
			r.err = fmt.Errorf("read capture %s: packet %d: %w", r.name, r.n+1, noEOF(err))
		}
		return Frame{}, r.err
	}
	r.n++
	return Frame{Data: data, TS: ci.Timestamp, CaptureLen: ci.CaptureLength, OrigLen: ci.Length}, nil
}

// LinkType returns the link type of every frame in the file.
func (r *Reader) LinkType() decode.LinkType { return r.link }

// Snaplen returns the file's snapshot length (bounded by MaxSnaplen).
func (r *Reader) Snaplen() uint32 { return r.snaplen }

// Nanos reports whether the file's timestamps are finer than microseconds.
func (r *Reader) Nanos() bool { return r.nanos }

// Close closes the file opened by Open; it does nothing for a Reader made
// by NewReader.
func (r *Reader) Close() error {
	if r.file == nil {
		return nil
	}
	if err := r.file.Close(); err != nil {
		return fmt.Errorf("close capture %s: %w", r.name, err)
	}
	return nil
}

// ngLinks watches the pcapng byte stream as pcapgo reads it and records
// the link type of each interface description block in full: pcapgo
// truncates it to 8 bits, which turns LINKTYPE_LINUX_SLL2 (276) into 20.
// It sees blocks no later than pcapgo does (it may see them earlier, as
// pcapgo reads ahead).
type ngLinks struct {
	hdr   [12]byte // block type, block length, first 4 bytes of the body
	nhdr  int
	skip  uint64 // bytes left in the current block
	order binary.ByteOrder
	links []decode.LinkType
	err   error // the stream stopped making sense; pcapgo will say why
}

const (
	ngSectionHeader  = 0x0a0d0d0a
	ngInterface      = 1
	ngByteOrderMagic = 0x1a2b3c4d
	ngMinBlock       = 12
)

// Write implements io.Writer for io.TeeReader; it never fails.
func (s *ngLinks) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && s.err == nil {
		if s.skip > 0 {
			k := min(uint64(len(p)), s.skip)
			p, s.skip = p[k:], s.skip-k
			continue
		}
		c := copy(s.hdr[s.nhdr:], p)
		s.nhdr, p = s.nhdr+c, p[c:]
		if s.nhdr < len(s.hdr) {
			break
		}
		s.nhdr = 0
		if binary.LittleEndian.Uint32(s.hdr[0:4]) == ngSectionHeader {
			switch uint32(ngByteOrderMagic) {
			case binary.LittleEndian.Uint32(s.hdr[8:12]):
				s.order = binary.LittleEndian
			case binary.BigEndian.Uint32(s.hdr[8:12]):
				s.order = binary.BigEndian
			default:
				s.err = errors.New("bad byte-order magic")
				continue
			}
		} else if s.order == nil {
			s.err = errors.New("block before the section header")
			continue
		}
		length := s.order.Uint32(s.hdr[4:8])
		if length < ngMinBlock {
			s.err = fmt.Errorf("block length %d", length)
			continue
		}
		if s.order.Uint32(s.hdr[0:4]) == ngInterface {
			s.links = append(s.links, decode.LinkType(s.order.Uint16(s.hdr[8:10])))
		}
		s.skip = uint64(length) - ngMinBlock
	}
	return n, nil
}

// midBlock reports whether the stream seen so far ends inside a pcapng
// block; false for a nil ngLinks (a pcap file).
func (s *ngLinks) midBlock() bool {
	return s != nil && (s.nhdr > 0 || s.skip > 0)
}

// check returns an error unless every interface seen has the link type of
// the first.
func (s *ngLinks) check() error {
	if len(s.links) == 0 {
		if s.err != nil {
			return fmt.Errorf("pcapng: %w", s.err)
		}
		return errors.New("pcapng: no interface description")
	}
	for i, l := range s.links[1:] {
		if l != s.links[0] {
			return fmt.Errorf("pcapng interface %d has link type %s, interface 0 %s: mixed link types are not supported", i+1, l, s.links[0])
		}
	}
	return nil
}
