package config

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Warnings returns the doubtful parts of a valid configuration, one line
// each. For now: rules that can never decide because an earlier rule
// matches every packet they match (the first matching rule decides, even
// when its probability or its limit keeps it from acting). Warnings do not
// make a configuration invalid; they are for the user to read.
func Warnings(c Config) []string {
	var ws []string
	for j, later := range c.Rules {
		for i, earlier := range c.Rules[:j] {
			if covers(earlier.Match, later.Match) {
				ws = append(ws, fmt.Sprintf("rules[%d] (%s) never decides: rules[%d] (%s) matches every packet it matches",
					j, later.Name, i, earlier.Name))
				break
			}
		}
	}
	return ws
}

// covers reports whether every packet b matches is matched by a.
func covers(a, b Match) bool {
	return subset(kindsOf(b), kindsOf(a)) &&
		(a.Closer == statetrack.NoCloser || a.Closer == b.Closer) &&
		(a.From == nil || b.From != nil && *a.From == *b.From) &&
		(a.Nth == 0 || a.Nth == b.Nth) &&
		(a.Retransmission == nil || b.Retransmission != nil && *a.Retransmission == *b.Retransmission) &&
		subset(b.States, a.States) &&
		subset(b.Ports, a.Ports) &&
		prefixesCover(a.Src, b.Src) &&
		prefixesCover(a.Dst, b.Dst)
}

// kindsOf returns the kinds m selects: a closer selects fin; nil means any.
func kindsOf(m Match) []statetrack.Kind {
	if m.Closer != statetrack.NoCloser && len(m.Packets) == 0 {
		return []statetrack.Kind{statetrack.Fin}
	}
	return m.Packets
}

// subset reports whether the values selected by b are all selected by a,
// where an empty list selects every value.
func subset[T comparable](b, a []T) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}

// prefixesCover reports whether every address in one of bs is in one of
// as, where an empty list holds every address.
func prefixesCover(as, bs []netip.Prefix) bool {
	if len(as) == 0 {
		return true
	}
	if len(bs) == 0 {
		return false
	}
	for _, b := range bs {
		if !slices.ContainsFunc(as, func(a netip.Prefix) bool { return a.Bits() <= b.Bits() && a.Contains(b.Addr()) }) {
			return false
		}
	}
	return true
}
