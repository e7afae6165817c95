package statetrack

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/tcpchaos/tcpchaos/statetrack/seqnum"
)

// State is an endpoint's RFC 9293 connection state as inferred on the wire.
// The zero value is Closed.
type State uint8

// The states of one endpoint, named as in RFC 9293. Listen is implicit: a
// server is taken to be listening when its first SYN arrives.
const (
	Closed State = iota
	Listen
	SynSent
	SynRcvd
	Established
	FinWait1
	FinWait2
	Closing
	TimeWait
	CloseWait
	LastAck
	numStates
)

// NumStates is the number of states, for arrays indexed by State.
const NumStates = int(numStates)

var stateNames = [numStates]string{
	Closed:      "CLOSED",
	Listen:      "LISTEN",
	SynSent:     "SYN_SENT",
	SynRcvd:     "SYN_RCVD",
	Established: "ESTABLISHED",
	FinWait1:    "FIN_WAIT_1",
	FinWait2:    "FIN_WAIT_2",
	Closing:     "CLOSING",
	TimeWait:    "TIME_WAIT",
	CloseWait:   "CLOSE_WAIT",
	LastAck:     "LAST_ACK",
}

// String returns the state's RFC name with underscores, e.g. "TIME_WAIT".
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// stateAliases maps the spellings of ss(8) that differ from the RFC names.
var stateAliases = map[string]State{
	"ESTAB":    Established,
	"SYN_RECV": SynRcvd,
	"UNCONN":   Closed,
}

// ParseState parses a state name. It accepts the RFC names in any case, with
// '-' or '_' as separator ("time-wait", "TIME_WAIT"), and the abbreviations
// of ss(8) ("ESTAB", "SYN-RECV", "FIN-WAIT-1").
func ParseState(name string) (State, error) {
	n := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(name), "-", "_"))
	n = strings.Replace(n, "FIN_WAIT1", "FIN_WAIT_1", 1)
	n = strings.Replace(n, "FIN_WAIT2", "FIN_WAIT_2", 1)
	for s, sn := range stateNames {
		if n == sn {
			return State(s), nil
		}
	}
	if s, ok := stateAliases[n]; ok {
		return s, nil
	}
	return Closed, fmt.Errorf("unknown state %q (want one of %s)", name, strings.Join(stateNames[:], ", "))
}

// Synchronizing reports whether s is a state of the handshake (SYN_SENT or
// SYN_RCVD).
func (s State) Synchronizing() bool { return s == SynSent || s == SynRcvd }

// Closing reports whether s is a state after a FIN was sent or received.
func (s State) Closing() bool { return s >= FinWait1 && s < numStates }

// Kind classifies a packet by its role in the handshake or the close, from
// the sender's point of view. The zero value is an invalid kind.
type Kind uint8

// The packet kinds: the vocabulary of rules (README.md, "Packet kinds").
const (
	Syn Kind = iota + 1
	SynAck
	HandshakeAck
	Fin
	FinAck
	FinalAck
	Rst
	Keepalive
	KeepaliveAck
	Data
	Ack
	numKinds
)

// DataKinds are the kinds of an established connection's data phase,
// which the live path may let bypass the queue (see Tracker.Quiet), in
// the order of a row of DataBounds.
var DataKinds = [...]Kind{Data, Ack, Keepalive, KeepaliveAck}

// DataBounds holds a number of packets per sender (indexed by Side) and
// data-phase kind (in DataKinds' order): see Tracker.SentPast.
type DataBounds [2][len(DataKinds)]uint32

// AtMost reports whether every number of b is at most c's: a connection
// past c (Tracker.SentPast) is past b.
func (b *DataBounds) AtMost(c *DataBounds) bool {
	for side := range b {
		for j := range b[side] {
			if b[side][j] > c[side][j] {
				return false
			}
		}
	}
	return true
}

var kindNames = [numKinds]string{
	Syn:          "syn",
	SynAck:       "syn-ack",
	HandshakeAck: "handshake-ack",
	Fin:          "fin",
	FinAck:       "fin-ack",
	FinalAck:     "final-ack",
	Rst:          "rst",
	Keepalive:    "keepalive",
	KeepaliveAck: "keepalive-ack",
	Data:         "data",
	Ack:          "ack",
}

// String returns the kind's name as used in rules and events, e.g. "final-ack".
func (k Kind) String() string {
	if k > 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Kinds returns every packet kind in vocabulary order.
func Kinds() []Kind {
	ks := make([]Kind, 0, numKinds-1)
	for k := Syn; k < numKinds; k++ {
		ks = append(ks, k)
	}
	return ks
}

// ParseKind parses a kind name such as "syn-ack" (case-insensitive).
func ParseKind(name string) (Kind, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	for k := Syn; k < numKinds; k++ {
		if kindNames[k] == n {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown packet kind %q (want one of %s)", name, strings.Join(kindNames[1:], ", "))
}

// Side names one endpoint of a connection. The client is the sender of the
// first SYN seen (or, for a connection picked up mid-stream, the side that is
// not on an intercepted server port).
type Side uint8

// The two endpoints of a connection; a Side indexes [2]State arrays.
const (
	Client Side = 0
	Server Side = 1
)

// Other returns the opposite endpoint.
func (s Side) Other() Side { return 1 - s }

// String returns "client" or "server".
func (s Side) String() string {
	if s == Client {
		return "client"
	}
	return "server"
}

// ParseSide parses "client" or "server", as String returns them.
func ParseSide(name string) (Side, error) {
	for _, s := range [...]Side{Client, Server} {
		if name == s.String() {
			return s, nil
		}
	}
	return Client, fmt.Errorf("unknown side %q (want client or server)", name)
}

// Closer tells, for a FIN, whether its sender closed first.
type Closer uint8

// Closer values. NoCloser is the zero value, used for every kind but fin.
const (
	NoCloser Closer = iota
	// Active: the FIN was sent before the peer's FIN was received (both FINs
	// of a simultaneous close are active).
	Active
	// Passive: the FIN was sent after the peer's FIN was received
	// (CLOSE_WAIT to LAST_ACK).
	Passive
)

// String returns "active", "passive" or "" for NoCloser.
func (c Closer) String() string {
	switch c {
	case Active:
		return "active"
	case Passive:
		return "passive"
	}
	return ""
}

// ParseCloser parses "active", "passive" or "" (NoCloser), as String
// returns them.
func ParseCloser(name string) (Closer, error) {
	for _, c := range [...]Closer{NoCloser, Active, Passive} {
		if name == c.String() {
			return c, nil
		}
	}
	return NoCloser, fmt.Errorf("unknown closer %q (want active or passive)", name)
}

// Flags holds the TCP header flags, bit for bit as in the header's 13th byte.
type Flags uint8

// TCP flag bits.
const (
	FIN Flags = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

// Has reports whether every flag in g is set in f.
func (f Flags) Has(g Flags) bool { return f&g == g }

// String renders the flags as tcpdump does: S, F, R, P, U, E, W and "." for
// ACK, e.g. "S." for a SYN-ACK and "F." for a FIN with ACK; "none" when no
// flag is set.
func (f Flags) String() string {
	if f == 0 {
		return noFlags
	}
	var b [8]byte
	n := 0
	for _, fl := range flagLetters {
		if f&fl.bit != 0 {
			b[n] = fl.c
			n++
		}
	}
	return string(b[:n])
}

// noFlags is how String spells a segment without flags.
const noFlags = "none"

// flagLetters are tcpdump's letters for the flags, in its order.
var flagLetters = [...]struct {
	bit Flags
	c   byte
}{{SYN, 'S'}, {FIN, 'F'}, {PSH, 'P'}, {RST, 'R'}, {URG, 'U'}, {ECE, 'E'}, {CWR, 'W'}, {ACK, '.'}}

// ParseFlags parses flags as String spells them ("S.", "FP.", "none"),
// each letter at most once, in any order.
func ParseFlags(s string) (Flags, error) {
	if s == noFlags {
		return 0, nil
	}
	if s == "" {
		return 0, errors.New(`no flags: want tcpdump's letters (e.g. "S.") or "none"`)
	}
	var f Flags
next:
	for i := 0; i < len(s); i++ {
		for _, fl := range flagLetters {
			if s[i] == fl.c && f&fl.bit == 0 {
				f |= fl.bit
				continue next
			}
		}
		return 0, fmt.Errorf("flags %q: unknown or repeated letter %q (want S, F, P, R, U, E, W or . each at most once)", s, s[i])
	}
	return f, nil
}

// Segment is one decoded TCP segment: the tracker's input. It holds values
// only (no references into a packet buffer), so it may be kept.
type Segment struct {
	Src, Dst netip.AddrPort
	Seq, Ack seqnum.Value
	Flags    Flags
	// Len is the TCP payload length in bytes. With GSO a single segment may
	// carry far more than one MTU.
	Len    uint32
	Window uint16
}

// SeqLen returns the sequence space the segment occupies: its payload plus
// one for SYN and one for FIN.
func (s *Segment) SeqLen() seqnum.Size {
	n := seqnum.Size(s.Len)
	if s.Flags&SYN != 0 {
		n++
	}
	if s.Flags&FIN != 0 {
		n++
	}
	return n
}

// Key identifies a connection's 4-tuple independently of direction: A is the
// lesser endpoint (by address, then port). It is comparable and allocation-free.
type Key struct {
	A, B netip.AddrPort
}

// KeyOf returns the direction-free key of a segment's 4-tuple.
func KeyOf(src, dst netip.AddrPort) Key {
	if c := src.Addr().Compare(dst.Addr()); c < 0 || (c == 0 && src.Port() <= dst.Port()) {
		return Key{A: src, B: dst}
	}
	return Key{A: dst, B: src}
}

// Observation is what the tracker reports for one packet as its sender emits
// it: before any delivery to the receiver.
type Observation struct {
	// Seg is a copy of the observed segment.
	Seg Segment
	// Client and Server are the connection's endpoints, as the client sees them.
	Client, Server netip.AddrPort
	// ConnID identifies this incarnation of the connection for the life of
	// the tracker (and among the trackers of Config.Shards); a new SYN on
	// a tuple in TIME_WAIT gets a new ConnID.
	ConnID uint64
	// Idle is how long the connection had no packet (observed, or
	// delivered later) before this one; 0 for the packet that created the
	// entry. For a quiet connection it is the time since its last observed
	// packet: its data phase went unseen (see Tracker.Quiet).
	Idle time.Duration
	// From is the sender.
	From   Side
	Kind   Kind
	Closer Closer
	// Nth counts packets of this kind from this sender in this connection
	// incarnation: 1 is the original, 2 the first retransmission, ...
	Nth uint32
	// Retransmission reports whether the segment's sequence space (or, for a
	// pure ACK of the close, its role) was already seen from this sender.
	Retransmission bool
	// Before holds both endpoints' states before the packet, the sender's
	// as of the send: corrected by what the packet's acknowledgment shows
	// it had received (see "Packets in flight" in the package doc), so it
	// may differ from the last state reported for the sender. After holds
	// them once the sender's move is applied. The receiver's state in After
	// is unchanged: it moves only on Deliver.
	Before, After [2]State
	// NewConn reports that this packet created the connection entry.
	NewConn bool
	// NewIncarnation reports a SYN that reused a tuple in TIME_WAIT (or
	// CLOSED after a reset): the old entry was replaced.
	NewIncarnation bool
	// Midstream reports that the connection was picked up after its
	// handshake (for example it started before tcpchaos), so its history
	// before this packet is inferred.
	Midstream bool
}

// GoneReason says why a connection left the table.
type GoneReason uint8

// Reasons for a connection to leave the table.
const (
	// TimeWaitExpired: 2×MSL passed since the last endpoint entered TIME_WAIT.
	TimeWaitExpired GoneReason = iota + 1
	// IdleExpired: no packet for the idle timeout.
	IdleExpired
	// Evicted: the table was full and this was the least recently active entry.
	Evicted
	// Replaced: a new incarnation took over the tuple.
	Replaced
	numGoneReasons
)

var goneReasonNames = [numGoneReasons]string{
	TimeWaitExpired: "time-wait-expired",
	IdleExpired:     "idle-expired",
	Evicted:         "evicted",
	Replaced:        "replaced",
}

// String returns "time-wait-expired", "idle-expired", "evicted" or "replaced".
func (r GoneReason) String() string {
	if r > 0 && r < numGoneReasons {
		return goneReasonNames[r]
	}
	return fmt.Sprintf("GoneReason(%d)", uint8(r))
}

// GoneReasons returns every reason in order.
func GoneReasons() []GoneReason {
	rs := make([]GoneReason, 0, numGoneReasons-1)
	for r := TimeWaitExpired; r < numGoneReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// Gone describes a connection that left the table.
type Gone struct {
	Client, Server netip.AddrPort
	ConnID         uint64
	Reason         GoneReason
	// Before holds the endpoints' states when the entry was removed; After
	// is what the removal means for them (CLOSED for a TIME_WAIT expiry,
	// unchanged otherwise).
	Before, After [2]State
	// At is when the removal took effect (the expiry deadline, or the time
	// passed in for an eviction).
	At time.Time
}

// Config sets the tracker's limits. The zero value of each field selects
// its default.
type Config struct {
	// MSL is the maximum segment lifetime; TIME_WAIT lasts 2×MSL.
	// Default 30s (so TIME_WAIT lasts 60 s, as on Linux).
	MSL time.Duration
	// MaxConnections bounds the table; when full, the least recently active
	// connection is evicted. Default 1,000,000.
	MaxConnections int
	// IdleTimeout expires connections with no packet for this long.
	// Default 10m.
	IdleTimeout time.Duration
	// QuietTimeout expires quiet connections (Tracker.Quiet) with no
	// observed packet for this long. Default DefaultQuietTimeout (5 days).
	QuietTimeout time.Duration
	// ServerPorts are the intercepted server ports: when a connection is
	// picked up mid-stream, the side on one of these ports is the server.
	// Without a match the destination of the first packet seen is taken as
	// the server.
	ServerPorts []uint16
	// OnGone, when set, is called synchronously for every connection that
	// leaves the table.
	OnGone func(Gone)
	// Shard and Shards keep the ConnIDs of trackers that serve one run
	// side by side (one per queue) apart: this tracker is number Shard of
	// Shards (0 of 1 when Shards is zero). Its ConnIDs carry Shard in the
	// high bits of their low 32 bits, above the slot index, so that no two
	// of the trackers hand out the same ConnID and each takes the others'
	// for unknown. Shard 0's ConnIDs are those of a tracker alone.
	// MaxConnections must be at most MaxConnectionsFor(Shards), and Shard
	// below Shards: New panics otherwise.
	Shard, Shards int
}
