// Package statetrack follows TCP connections as a middlebox sees them: it
// classifies every packet by its role in the handshake or the close (a
// Kind), counts it per sender and kind (Nth), flags retransmissions, and
// infers both endpoints' RFC 9293 states.
//
// It has no I/O, no clock and no goroutines: time is passed in, so the same
// Tracker runs under a live queue, a pcap replay or a test table. A Tracker
// is not safe for concurrent use.
//
// # Model
//
// Each connection has two half-connections, one per endpoint (ISN, the end
// of the sequence space seen, the FIN's sequence number, whether the FIN
// and the SYN-ACK still await an ACK, the state, per-kind counters). One
// update routine serves both directions by swapping the halves: Observe
// runs its sender part when a packet leaves its sender, Deliver its
// receiver part when the packet reaches its receiver. A dropped packet is
// never delivered, a delayed one when released, a duplicated one once per
// copy.
//
// The sender moves on Observe:
//
//	any state     -> CLOSED       it sends an RST in its own sequence space
//	CLOSED,LISTEN -> SYN_SENT     SYN
//	CLOSED,LISTEN,SYN_SENT -> SYN_RCVD   SYN-ACK (the SYN or the peer's SYN was missed)
//	SYN_SENT      -> ESTABLISHED  it acknowledges the peer's SYN (the SYN-ACK was missed)
//	SYN_RCVD,ESTABLISHED -> FIN_WAIT_1   FIN (closer active)
//	CLOSE_WAIT    -> LAST_ACK     FIN (closer passive)
//
// The receiver moves on Deliver:
//
//	CLOSED,LISTEN,SYN_SENT -> SYN_RCVD   SYN (a listener is implicit; SYN_SENT: simultaneous open)
//	SYN_SENT,SYN_RCVD -> ESTABLISHED     SYN-ACK acknowledging its SYN
//	SYN_RCVD   -> ESTABLISHED     ACK of its SYN (the third ACK, or data in its place)
//	SYN_RCVD   -> CLOSE_WAIT      ACK of its SYN carrying a FIN
//	ESTABLISHED -> CLOSE_WAIT     FIN
//	FIN_WAIT_1 -> FIN_WAIT_2      ACK of its FIN
//	FIN_WAIT_1 -> CLOSING         FIN not acknowledging its FIN (simultaneous close)
//	FIN_WAIT_1 -> TIME_WAIT       FIN acknowledging its FIN (three-way close)
//	FIN_WAIT_2 -> TIME_WAIT       FIN
//	CLOSING    -> TIME_WAIT       ACK of its FIN
//	LAST_ACK   -> CLOSED          ACK of its FIN
//	any but CLOSED,LISTEN -> CLOSED   an acceptable RST
//
// An acceptable RST is, loosely after RFC 9293, one that acknowledges the
// SYN in SYN_SENT, and elsewhere one whose sequence number lies within
// 16 MiB of the next one expected from its sender; an RST outside that
// range moves neither its sender nor its receiver. TIME_WAIT accepts RSTs
// (Linux's default, net.ipv4.tcp_rfc1337=0). A segment without SYN, RST
// and ACK (a bare FIN, or no flags at all) is discarded by receivers and
// moves nobody, as on Linux; it is still classified and counted.
//
// # Expiry and the table
//
// A connection leaves the table 2×MSL after an endpoint last entered
// TIME_WAIT (a retransmitted FIN delivered to an endpoint in TIME_WAIT
// restarts the timer, as Linux does before re-ACKing it; Gone.After shows
// the TIME_WAIT endpoints CLOSED), after IdleTimeout without packets, when
// evicted as the least recently active entry of a full table, or when a
// SYN from an endpoint in CLOSED or TIME_WAIT replaces it with a new
// incarnation. Connections closed by an RST stay until one of those.
//
// A quiet connection (Tracker.Quiet: the live path stopped queueing its
// established data phase) expires after QuietTimeout instead of
// IdleTimeout, is evicted only after every connection that is not quiet,
// and resynchronizes its sequence numbers on its next observed packet.
//
// Entries live in a paged slab of 144-byte slots indexed by a map from 32
// bits of a seeded hash of the tuple to a slot, with intrusive int32 links
// for hash collisions, activity order (LRU) and TIME_WAIT deadlines: about
// 165 bytes per tracked connection in all. A ConnID packs the slot's
// generation and index, so Deliver needs no lookup. Nth
// saturates at 255 for control kinds and at 2^32-1 for data and ack.
//
// A self-connect (source and destination are one socket) has one half:
// every packet is from the client, both reported states are that socket's,
// and it goes through the simultaneous-open path as on Linux.
package statetrack
