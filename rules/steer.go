package rules

import (
	"reflect"
	"slices"
)

// SetEnabled enables or disables the rule named name; it reports false
// when the Set has no such rule. Engines see the change from their next
// Decide on (it is atomic: it may be called from any goroutine).
func (s *Set) SetEnabled(name string, on bool) bool {
	i := slices.Index(s.names, name)
	if i < 0 {
		return false
	}
	s.disabled[i].Store(!on)
	return true
}

// Enabled reports, per rule, whether it is enabled.
func (s *Set) Enabled() []bool {
	on := make([]bool, len(s.disabled))
	for i := range s.disabled {
		on[i] = !s.disabled[i].Load()
	}
	return on
}

// Limits returns, per rule, its limit (0: none).
func (s *Set) Limits() []uint64 {
	l := make([]uint64, len(s.rules))
	for i := range s.rules {
		l[i] = s.rules[i].limit
	}
	return l
}

// Carry takes over what old's Engines did, for a reload that replaces old
// by s: each rule of s named as a rule of old starts from old's count of
// packets acted on (so that its limit is not granted afresh), and keeps
// old's enabled flag when it is the same rule (same match, action,
// probability and limit). Call it before any Engine decides with s, while
// no Engine decides with old (the counts are read once).
func (s *Set) Carry(old *Set) {
	for i, name := range s.names {
		j := slices.Index(old.names, name)
		if j < 0 {
			continue
		}
		s.acted[i].Store(old.acted[j].Load())
		if reflect.DeepEqual(s.rules[i], old.rules[j]) {
			s.disabled[i].Store(old.disabled[j].Load())
		}
	}
}

// Switch makes e decide with s from now on, in place of its Set (a
// reload): its random source goes on where it was, and its per-rule hits
// follow the rules by name (a rule new in s starts from zero).
func (e *Engine) Switch(s *Set) {
	hits := make([]uint64, s.Len())
	for i, name := range s.names {
		if j := slices.Index(e.set.names, name); j >= 0 {
			hits[i] = e.hits[j]
		}
	}
	e.set, e.hits = s, hits
}
