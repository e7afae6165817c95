//go:build linux

package nfq

import (
	"errors"
	"fmt"
)

// Blackholed connections are dark in the kernel: their packets in a dark
// direction are dropped in mangle before they can be queued, so a
// blackholed bulk transfer costs no user-space work. Two bits of the
// connection mark say which directions are dark, by conntrack's
// direction (the original one is that of the first packet conntrack saw,
// the client's SYN when it saw the handshake):
//
//	TCPCHAOS (first)  -p tcp --tcp-flags RST NONE -m connmark --mark O/O -m conntrack --ctdir ORIGINAL -j DROP
//	                  -p tcp --tcp-flags RST NONE -m connmark --mark R/R -m conntrack --ctdir REPLY -j DROP
//
// An RST is not dropped there: it is queued, so that the tracker learns
// of the connection's end, and the pipeline drops it (the connection is
// dark to it too).
//
// The verdict cannot set the connection mark (see QuietMark), and the
// pipeline knows the directions by client and server, not by conntrack's
// direction: the verdict of the packet that starts a blackhole accepts it
// with VerdictMark and two bits in the packet mark, DarkSameMark (the
// packet's own direction goes dark) and DarkOppositeMark (the other
// one), and the filter chain that sees it after the verdict turns them
// into the connection's bits by the packet's conntrack direction, then
// drops the packet if its own direction went dark (the matching packet
// is itself included):
//
//	filter TCPCHAOS  -m mark --mark S/S -m conntrack --ctdir ORIGINAL -j CONNMARK --set-xmark O/O
//	                 -m mark --mark S/S -m conntrack --ctdir REPLY -j CONNMARK --set-xmark R/R
//	                 -m mark --mark P/P -m conntrack --ctdir ORIGINAL -j CONNMARK --set-xmark R/R
//	                 -m mark --mark P/P -m conntrack --ctdir REPLY -j CONNMARK --set-xmark O/O
//	                 -m mark --mark S/S -j DROP
//
// The packets of the connection queued before that verdict reaches the
// kernel are still queued; the pipeline drops those in a dark direction.
// A blackhole with a duration heals when the Queue clears both bits from
// the connection's mark through conntrack's netlink interface (heal.go).
// Interception.Remove (and Cleanup) clear them from every conntrack entry
// once the rules are gone, with the quiet bits (ctmarks.go): a connection
// dark when the run stopped (for ever, or not healed yet) must not be
// dark to the next run's rules.
//
// The kernel's drops are counted per rule, not per connection: DarkDrops
// sums the two DROP rules' counters over both families.
const (
	// DarkSameMark, in a packet mark, says that the packet's own
	// direction goes dark (bit 24).
	DarkSameMark uint32 = 0x01000000
	// DarkOppositeMark, in a packet mark, says that the other direction
	// of the packet's connection goes dark (bit 23).
	DarkOppositeMark uint32 = 0x00800000
	// DarkOriginalMark, in a connection mark, says that the packets in
	// conntrack's original direction are dropped (bit 22).
	DarkOriginalMark uint32 = 0x00400000
	// DarkReplyMark, in a connection mark, says that the packets in
	// conntrack's reply direction are dropped (bit 21).
	DarkReplyMark uint32 = 0x00200000
)

// ctdirs are conntrack's directions and the connection mark bit that
// darkens each.
var ctdirs = [...]struct {
	name string
	bit  uint32
}{{"ORIGINAL", DarkOriginalMark}, {"REPLY", DarkReplyMark}}

// darkDropRules are the mangle rules that drop a dark direction's
// packets but RSTs.
func darkDropRules() []rule {
	rs := make([]rule, 0, len(ctdirs))
	for _, d := range ctdirs {
		rs = append(rs, mangle(Chain, "-p", "tcp", "--tcp-flags", "RST", "NONE",
			"-m", "connmark", "--mark", masked(d.bit, d.bit), "-m", "conntrack", "--ctdir", d.name, "-j", "DROP"))
	}
	return rs
}

// darkenRules are the filter rules that turn a verdict's DarkSameMark and
// DarkOppositeMark into the connection mark's bits, and drop the packet
// whose own direction went dark.
func darkenRules() []rule {
	var rs []rule
	for _, m := range []struct {
		mark     uint32
		opposite bool
	}{{DarkSameMark, false}, {DarkOppositeMark, true}} {
		for i, d := range ctdirs {
			bit := d.bit
			if m.opposite {
				bit = ctdirs[1-i].bit
			}
			rs = append(rs, filter(Chain, "-m", "mark", "--mark", masked(m.mark, m.mark),
				"-m", "conntrack", "--ctdir", d.name, "-j", "CONNMARK", "--set-xmark", masked(bit, bit)))
		}
	}
	return append(rs, filter(Chain, "-m", "mark", "--mark", masked(DarkSameMark, DarkSameMark), "-j", "DROP"))
}

// DarkStats count what the kernel dropped of blackholed connections.
type DarkStats struct {
	Packets, Bytes uint64
}

// DarkDrops returns the packets and bytes of blackholed connections the
// kernel dropped before they could be queued, over both families, from
// the DROP rules' counters. It must run in the namespace of Install,
// before Remove. Without InstallOptions.Blackhole it returns zero at
// once.
func (in *Interception) DarkDrops() (DarkStats, error) {
	var ds DarkStats
	if !in.dark {
		return ds, nil
	}
	var errs []error
	for _, f := range in.families {
		stats, err := f.ipt.StructuredStats(Table, Chain)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: read the counters of chain %s: %w", f.plan.binary, Chain, err))
			continue
		}
		for _, st := range stats {
			if st.Target == "DROP" {
				ds.Packets += st.Packets
				ds.Bytes += st.Bytes
			}
		}
	}
	return ds, errors.Join(errs...)
}
