// Package seqnum implements TCP sequence numbers as a type of their own with
// wrap-safe comparisons (RFC 9293 section 3.4, serial number arithmetic).
// Raw uint32 sequence numbers are never compared directly anywhere else.
//
// The type and its wrap-safe compare follow gVisor's pkg/tcpip/seqnum
// (gvisor.dev/gvisor/pkg/tcpip/seqnum): LessThan, InRange and InWindow are
// named and defined as there, by the sign of a 32-bit difference.
package seqnum

// Value is a TCP sequence or acknowledgment number. The zero value is the
// sequence number 0; all comparisons are modulo 2^32.
type Value uint32

// Size is a length in sequence space.
type Size uint32

// LessThan reports whether v comes strictly before w in sequence space.
func (v Value) LessThan(w Value) bool { return int32(v-w) < 0 }

// LessThanEq reports whether v is w or comes before it.
func (v Value) LessThanEq(w Value) bool { return v == w || v.LessThan(w) }

// InRange reports whether v lies in the half-open interval [a, b).
func (v Value) InRange(a, b Value) bool { return v-a < b-a }

// InWindow reports whether v lies in the window of size s starting at first.
func (v Value) InWindow(first Value, s Size) bool { return v.InRange(first, first.Add(s)) }

// Add returns v advanced by s.
func (v Value) Add(s Size) Value { return v + Value(s) }

// Size returns the distance from v to w, w-v.
func (v Value) Size(w Value) Size { return Size(w - v) }
