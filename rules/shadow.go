package rules

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/tcpchaos/tcpchaos/statetrack"
)

// Warnings returns the doubtful parts of valid rules, one line each. For
// now: rules that can never decide because an earlier rule matches every
// packet they match (the first matching rule decides, even when its
// probability or its limit keeps it from acting). Warnings do not make the
// rules invalid; they are for the user to read.
//
// Coverage is judged on the compiled rules, the same selectors Decide
// matches with.
func Warnings(rs []Rule) []string {
	s := Compile(rs)
	var ws []string
	for j := range s.rules {
		for i := range s.rules[:j] {
			if s.rules[i].covers(&s.rules[j]) {
				ws = append(ws, fmt.Sprintf("rules[%d] (%s) never decides: rules[%d] (%s) matches every packet it matches",
					j, s.names[j], i, s.names[i]))
				break
			}
		}
	}
	return ws
}

// covers reports whether every packet b matches is matched by r.
func (r *rule) covers(b *rule) bool {
	return b.kinds&^r.kinds == 0 &&
		b.states&^r.states == 0 &&
		(r.closer == statetrack.NoCloser || r.closer == b.closer) &&
		(r.from < 0 || r.from == b.from) &&
		(r.nth == 0 || r.nth == b.nth) &&
		(r.rexmit < 0 || r.rexmit == b.rexmit) &&
		r.idle <= b.idle &&
		r.ports.covers(b.ports) &&
		prefixesCover(r.src, b.src) &&
		prefixesCover(r.dst, b.dst)
}

// covers reports whether every port of q is in p, where nil holds every
// port.
func (p *portSet) covers(q *portSet) bool {
	if p == nil {
		return true
	}
	if q == nil {
		return false
	}
	for i := range q {
		if q[i]&^p[i] != 0 {
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
