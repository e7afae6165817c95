//go:build linux

package nfq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"testing"
	"time"

	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpchaos/tcpchaos/internal/netlab/netlabtest"
)

// entryAttrs encodes a conntrack entry's attributes as the kernel sends
// them in a dump: the original tuple, the zone (when not 0, in the tuple
// when it is the original direction's only) and the mark.
func entryAttrs(t *testing.T, src, dst netip.AddrPort, zone ctZone, mark uint32) []byte {
	t.Helper()
	ae := entryEncoder(src, dst, zone)
	ae.Uint32(ctaMark, mark)
	attrs, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{unix.AF_INET, 0, 0, 0}, attrs...)
}

// TestParseEntry: a conntrack entry's original tuple, zone and mark read
// back as encodeTuple and the kernel write them, IPv4 and IPv6.
func TestParseEntry(t *testing.T) {
	for _, c := range [][2]string{{"198.18.1.2:40000", "198.19.2.2:8080"}, {"[fd00:1::2]:40000", "[fd00:2::2]:8080"}} {
		src, dst := netip.MustParseAddrPort(c[0]), netip.MustParseAddrPort(c[1])
		for _, zone := range []ctZone{{}, {id: 7}, {id: 5, origOnly: true}} {
			e, err := parseEntry(entryAttrs(t, src, dst, zone, DarkReplyMark|1))
			if err != nil || e.src != src || e.dst != dst || !e.tcp || e.zone != zone || e.mark != DarkReplyMark|1 {
				t.Errorf("%s->%s in zone %+v: parsed %+v, %v", src, dst, zone, e, err)
			}
		}
	}
	if _, err := parseEntry([]byte{2}); err == nil {
		t.Error("a short message parsed")
	}
}

// nlmsg frames body as one netlink message of type typ and sequence
// number seq.
func nlmsg(typ uint16, seq uint32, body []byte) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(nlmsgHdrLen+len(body)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_MULTI)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id
	b = append(b, body...)
	return append(b, make([]byte, align4(len(b))-len(b))...)
}

// TestEachMessage: the messages of a datagram come out in order with
// their type and sequence number until the callback stops; an error
// message carries the kernel's errno, an acknowledgement none.
func TestEachMessage(t *testing.T) {
	a := netip.MustParseAddrPort("198.18.1.2:40000")
	b := netip.MustParseAddrPort("198.19.2.2:8080")
	entry := nlmsg(nfnlSubsysCtnetlink<<8|ipctnlMsgCtNew, 7, entryAttrs(t, a, b, ctZone{}, QuietMark))
	errno := -int32(unix.EOPNOTSUPP)
	refused := nlmsg(unix.NLMSG_ERROR, 8, binary.NativeEndian.AppendUint32(nil, uint32(errno)))
	ack := nlmsg(unix.NLMSG_ERROR, 9, make([]byte, 4))
	var got []string
	err := eachMessage(slices.Concat(entry, refused, ack, entry), func(typ uint16, seq uint32, body []byte) (bool, error) {
		if typ == unix.NLMSG_ERROR {
			got = append(got, fmt.Sprint(seq, " ", nlError(body)))
			return seq != 9, nil
		}
		e, err := parseEntry(body)
		got = append(got, fmt.Sprint(seq, " ", hex(e.mark)))
		return true, err
	})
	want := "[7 0x8000000 8 operation not supported 9 <nil>]"
	if err != nil || fmt.Sprint(got) != want {
		t.Errorf("eachMessage: %v, %v; want %s", got, err, want)
	}
	if err := eachMessage(entry[:len(entry)-8], func(uint16, uint32, []byte) (bool, error) { return true, nil }); err == nil {
		t.Error("a truncated message parsed")
	}
}

// TestWithMarks: a failure to clear the marks is a warning (ErrMarksLeft)
// only when the rules did not fail.
func TestWithMarks(t *testing.T) {
	rules, marks := errors.New("rules"), errors.New("marks")
	if err := withMarks(nil, nil); err != nil {
		t.Errorf("no failure: %v", err)
	}
	if err := withMarks(nil, marks); !errors.Is(err, ErrMarksLeft) || !errors.Is(err, marks) {
		t.Errorf("the marks only: %v, want ErrMarksLeft wrapping %v", err, marks)
	}
	if err := withMarks(rules, marks); errors.Is(err, ErrMarksLeft) || !errors.Is(err, rules) || !errors.Is(err, marks) {
		t.Errorf("rules and marks: %v, want both and not ErrMarksLeft (not a warning)", err)
	}
}

// TestClearConnMarksTiming: 10,000 TCP entries, half of them IPv6, each
// with every tcpchaos bit and a bit of another program's, and 10,000
// without a tcpchaos bit, are cleared of tcpchaos's bits in a few
// seconds at most; the other bit stays, and the other entries are left
// as they were.
func TestClearConnMarksTiming(t *testing.T) {
	const n = 10000
	ns := netlabtest.NewNamespace(t, "host")
	const other = 0x1
	err := ns.Do(func() error {
		h, err := vnl.NewHandle(unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		defer h.Close()
		for i := range 2 * n {
			fam, src, dst := uint8(unix.AF_INET), net.IPv4(198, 18, byte(i>>8), byte(i)).To4(), net.IPv4(198, 19, 0, 1).To4()
			if i%2 == 1 {
				fam, src, dst = unix.AF_INET6, net.ParseIP(fmt.Sprintf("fd00:1::%x", i&0xffff)), net.ParseIP("fd00:2::1")
			}
			sport := uint16(40000 + i>>16)
			mark := uint32(other)
			if i < n {
				mark |= ConnMarks
			}
			f := &vnl.ConntrackFlow{
				FamilyType: fam,
				Forward:    vnl.IPTuple{SrcIP: src, DstIP: dst, SrcPort: sport, DstPort: 8080, Protocol: unix.IPPROTO_TCP},
				Reverse:    vnl.IPTuple{SrcIP: dst, DstIP: src, SrcPort: 8080, DstPort: sport, Protocol: unix.IPPROTO_TCP},
				Mark:       mark, TimeOut: 600,
				ProtoInfo: &vnl.ProtoInfoTCP{State: 3}, // ESTABLISHED
			}
			if err := h.ConntrackCreate(vnl.ConntrackTable, vnl.InetFamily(fam), f); err != nil {
				return fmt.Errorf("create entry %d: %w", i, err)
			}
		}
		start := time.Now()
		err = clearConnMarks()
		took := time.Since(start)
		t.Logf("cleared %d of %d entries in %v", n, 2*n, took)
		if took > 10*time.Second {
			t.Errorf("clearing %d entries took %v", n, took)
		}
		if err != nil {
			return err
		}
		marks := map[uint32]int{}
		for _, fam := range []vnl.InetFamily{unix.AF_INET, unix.AF_INET6} {
			flows, err := h.ConntrackTableList(vnl.ConntrackTable, fam)
			if err != nil {
				return err
			}
			for _, f := range flows {
				marks[f.Mark]++
			}
		}
		if len(marks) != 1 || marks[other] != 2*n {
			t.Errorf("marks after clearing: %v, want %d entries with %s", marks, 2*n, hex(other))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRecvRetriesInterruptedReads: signals delivered to the thread that
// waits for the kernel's answer interrupt its read (a read with a receive
// timeout is never restarted); recv reads again and waits out its deadline
// instead of failing with EINTR.
func TestRecvRetriesInterruptedReads(t *testing.T) {
	s, err := openNetfilter()
	if err != nil {
		t.Skipf("no netfilter netlink socket here: %v", err)
	}
	defer s.close()
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, unix.SIGUSR1) // delivered to the handler, not fatal
	defer signal.Stop(sig)
	tid := make(chan int)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		_, err := s.recv(time.Now().Add(500 * time.Millisecond))
		done <- err
	}()
	id := <-tid
	began := time.Now()
	for range 5 {
		time.Sleep(50 * time.Millisecond)
		if err := unix.Tgkill(unix.Getpid(), id, unix.SIGUSR1); err != nil {
			t.Fatalf("signal the reading thread: %v", err)
		}
	}
	if err := <-done; !errors.Is(err, errGaveUp) {
		t.Errorf("recv with nothing to read, interrupted 5 times: %v, want %v", err, errGaveUp)
	}
	if took := time.Since(began); took < 450*time.Millisecond {
		t.Errorf("recv gave up after %v, before its deadline (500 ms)", took)
	}
	if len(sig) == 0 {
		t.Error("no signal was delivered")
	}
}
