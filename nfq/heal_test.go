//go:build linux

package nfq

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"

	rulespkg "github.com/tcpchaos/tcpchaos/rules"
	"github.com/tcpchaos/tcpchaos/statetrack"
)

// fakeMarker records the connections whose mark bits were cleared.
type fakeMarker struct {
	cleared []string
	err     error
}

func (m *fakeMarker) clearMark(src, dst netip.AddrPort, bits uint32) error {
	if m.err != nil {
		return m.err
	}
	m.cleared = append(m.cleared, src.String()+"->"+dst.String()+" "+hex(bits))
	return nil
}

// TestBlackholeVerdictMarks: the packet that starts a blackhole in its own
// direction is accepted with VerdictMark and DarkSameMark (and
// DarkOppositeMark for both), for the kernel to darken the connection and
// drop it, and counted dropped; one that starts it in the other direction
// carries DarkOppositeMark only and is counted accepted. The connection,
// darkened twice, heals when the last blackhole does (1 s): its heal
// waits for its time, then clears both connection mark bits, and runs the
// handler's expiry, which heals the handler's blackholes (its events).
func TestBlackholeVerdictMarks(t *testing.T) {
	c, s := netip.MustParseAddrPort("198.18.1.2:40000"), netip.MustParseAddrPort("198.19.2.2:8080")
	fromClient := statetrack.Observation{From: statetrack.Client, ConnID: 1, Seg: statetrack.Segment{Src: c, Dst: s}}
	f := newFixture(t,
		rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Blackhole, Dark: rulespkg.Both, For: 2 * time.Second}, Obs: fromClient},
		rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Accept, Dark: rulespkg.ToClient, For: time.Second}, Obs: fromClient},
		rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Blackhole}, Obs: fromClient})
	m := &fakeMarker{}
	f.c.heals = &heals{ct: m}
	f.send(1, f.pkt, 0)
	f.send(2, f.pkt, 0)
	f.send(3, f.pkt, 0)
	for id, want := range map[uint32]uint32{1: VerdictMark | DarkSameMark | DarkOppositeMark, 2: VerdictMark | DarkOppositeMark} {
		if v := f.k.verdict(t, id); v != nfqueue.NfAccept {
			t.Errorf("packet %d: verdict %d, want accept (with marks)", id, v)
		}
		if got := f.k.marks[id]; got != want {
			t.Errorf("packet %d: mark %s, want %s", id, hex(got), hex(want))
		}
	}
	if v := f.k.verdict(t, 3); v != nfqueue.NfDrop {
		t.Errorf("packet of a dark connection: verdict %d, want drop", v)
	}
	if d, a := f.c.c.dropped.Load(), f.c.c.accepted.Load(); d != 2 || a != 1 {
		t.Errorf("dropped %d accepted %d, want 2 and 1", d, a)
	}
	if next, ok := f.c.fire(f.at(999)); !ok || !next.Equal(f.at(1000)) || len(m.cleared) != 0 || len(f.h.expired) != 0 {
		t.Errorf("before the first heal: next %v %v, cleared %v, expired %v; want %v and none", next, ok, m.cleared, f.h.expired, f.at(1000))
	}
	if _, ok := f.c.fire(f.at(2000)); ok {
		t.Error("a deadline is left after both heals")
	}
	if len(f.h.expired) != 1 || !f.h.expired[0].Equal(f.at(2000)) {
		t.Errorf("the handler's expiry ran at %v, want once at the heal, %v", f.h.expired, f.at(2000))
	}
	want := "198.18.1.2:40000->198.19.2.2:8080 " + hex(DarkOriginalMark|DarkReplyMark)
	if len(m.cleared) != 1 || m.cleared[0] != want || f.c.c.healed.Load() != 1 {
		t.Errorf("cleared %q (healed %d), want once %q", m.cleared, f.c.c.healed.Load(), want)
	}
}

// TestHealFailuresCounted: a heal conntrack refuses, and one beyond
// maxHeals, are counted.
func TestHealFailuresCounted(t *testing.T) {
	hs := &heals{ct: &fakeMarker{err: errors.New("refused")}}
	t0 := time.Unix(0, 0)
	for i := range maxHeals + 1 {
		if ok := hs.add(t0, netip.AddrPort{}, netip.AddrPort{}); ok != (i < maxHeals) {
			t.Fatalf("add %d = %v", i, ok)
		}
	}
	if healed, errs := hs.fire(t0); healed != 0 || len(errs) != maxHeals {
		t.Errorf("fire: %d healed, %d errors, want 0 and %d", healed, len(errs), maxHeals)
	}
}

// TestAcceptClearsDarkBits: with quiet connections and blackholes, every
// accept verdict carries VerdictMark and so enters the filter chain that
// darkens on DarkSameMark and DarkOppositeMark: a packet whose own mark
// (another program's) has those bits must lose them, or the kernel would
// darken its connection and drop it though no blackhole matched. Its
// other bits are kept.
func TestAcceptClearsDarkBits(t *testing.T) {
	f := newFixture(t, rulespkg.Verdict{Decision: rulespkg.Decision{Action: rulespkg.Accept}, Obs: obs(1)})
	f.c.quiet, f.c.heals = true, &heals{ct: &fakeMarker{}}
	f.k.enqueue(1)
	f.c.packet(1, f.pkt, len(f.pkt), DarkSameMark|DarkOppositeMark|0x5, f.at(0))
	f.c.endBurst(false)
	if got := f.k.marks[1]; got != VerdictMark|0x5 {
		t.Errorf("accepted with mark %s, want %s", hex(got), hex(VerdictMark|0x5))
	}
}

// TestDarkenedAgainHealsWithTheLast: a connection darkened again before
// it healed heals when its last blackhole does, as the pipeline has it:
// not at the first one's time (the kernel would let the dark packets
// through to user space), and never when the last has no duration.
func TestDarkenedAgainHealsWithTheLast(t *testing.T) {
	c, s := netip.MustParseAddrPort("198.18.1.2:40000"), netip.MustParseAddrPort("198.19.2.2:8080")
	m := &fakeMarker{}
	hs := &heals{ct: m}
	t0 := time.Unix(0, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	hs.add(at(1000), c, s)
	hs.add(at(1500), s, c) // the server's packet, the other way
	if healed, _ := hs.fire(at(1000)); healed != 0 || len(m.cleared) != 0 {
		t.Errorf("at the first blackhole's end: healed %d, want none (darkened again until 1.5 s)", healed)
	}
	if healed, _ := hs.fire(at(1500)); healed != 1 {
		t.Errorf("at the last blackhole's end: healed %d, want 1", healed)
	}
	hs.add(at(3000), c, s)
	hs.add(time.Time{}, c, s) // for ever
	if healed, _ := hs.fire(at(4000)); healed != 0 || len(hs.last) != 0 {
		t.Errorf("darkened again for ever: healed %d, %d connections kept; want none", healed, len(hs.last))
	}
	hs.add(time.Time{}, c, s)
	if len(hs.h) != 0 || len(hs.last) != 0 {
		t.Errorf("a blackhole for ever with none waiting: %d heals, %d connections kept; want none", len(hs.h), len(hs.last))
	}
}
