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
// The sender moves on Observe, after the correction below:
//
//	any but SYN_SENT -> CLOSED    it sends an RST in its own sequence space (SYN_RCVD: at its snd_nxt)
//	CLOSED,LISTEN -> SYN_SENT     SYN
//	CLOSED,LISTEN,SYN_SENT -> SYN_RCVD   SYN-ACK (the SYN or the peer's SYN was missed)
//	TIME_WAIT     -> SYN_RCVD     SYN-ACK (it took a new incarnation's SYN)
//	SYN_RCVD,ESTABLISHED -> FIN_WAIT_1   FIN (closer active)
//	CLOSE_WAIT    -> LAST_ACK     FIN (closer passive)
//
// The receiver moves on Deliver:
//
//	CLOSED,LISTEN,SYN_SENT -> SYN_RCVD   SYN (a listener is implicit; SYN_SENT: simultaneous open)
//	TIME_WAIT  -> SYN_RCVD        SYN of a new incarnation beyond its rcv_nxt
//	SYN_SENT,SYN_RCVD -> ESTABLISHED     SYN-ACK acknowledging its SYN (and nothing beyond)
//	SYN_RCVD   -> ESTABLISHED     ACK of its SYN and nothing beyond (the third ACK, or data in its place)
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
// A segment without SYN, RST and ACK (a bare FIN, or no flags at all) is
// discarded by receivers and moves nobody, as on Linux; it is still
// classified and counted.
//
// # Packets in flight beyond the middle: the sender correction
//
// The tracker delivers a packet to its receiver the moment it passes, but
// on the wire it reaches the receiver later, and meanwhile the receiver may
// send a packet written before the first arrived. The packet's
// acknowledgment field says so: it is the sender's rcv_nxt as of the send.
// So before classifying a packet with ACK, Observe corrects its sender
// (Observation.Before holds the corrected state, and the kind, closer and
// rules follow from it):
//
//   - the last delivery that moved the sender with a FIN, or with the
//     data that completed a handshake, is remembered until the sender
//     acknowledges it (a move made by a SYN is never contradicted: an
//     endpoint that has not received its peer's SYN sends nothing with
//     ACK);
//   - a packet that does not acknowledge it shows the segment still on its
//     way: the move is taken back as of the send. The segment then arrives
//     when a later packet of the sender acknowledges it, or when the peer's
//     next packet is delivered (it travels behind the first);
//   - a sender taken for SYN_SENT that acknowledges the peer's SYN got the
//     SYN-ACK (one held, or missed).
//
// The common case is the close of an HTTP/1.0 exchange: the server's FIN
// passes first, the client's FIN crosses it beyond the middle and does not
// acknowledge it. The client's FIN is then an active close from
// ESTABLISHED, the client goes to CLOSING when the server's FIN reaches it
// and to TIME_WAIT on the ACK of its own FIN, and the ACKs on both sides
// are final-acks: a simultaneous close, as the kernels see it.
//
// What the middle cannot know: a packet without ACK (a SYN, a bare RST)
// carries no acknowledgment and reveals nothing; a pure ACK occupies no
// sequence space, so no acknowledgment can show whether it arrived (an ACK
// of a FIN lost beyond the middle shows only in the FIN's retransmission);
// data after the handshake moves no state that an acknowledgment could
// contradict; only the last such move is remembered; a segment lost
// beyond the middle counts as arrived once the peer's next packet is
// delivered, until an acknowledgment shows otherwise; and packets of one
// direction may reach the middle in another order than they were sent
// (sent on two CPUs, a SYN retransmission can pass after the handshake
// ACK, or after the whole connection: see the stale SYN below).
//
// # RSTs and SYNs on a synchronized connection (RFC 5961)
//
// An RST closes its receiver only in place: in SYN_SENT it must
// acknowledge the SYN and nothing beyond what the receiver sent; in
// SYN_RCVD it may lie anywhere in the window from the SYN's sequence
// number + 1 (Linux's tcp_check_req: all the receiver took is the SYN,
// whatever else the middle saw of the RST's sender); elsewhere its
// sequence number must be the receiver's rcv_nxt, taken to be the next
// sequence number the middle expects from the RST's sender, or rcv_nxt-1 in
// CLOSE_WAIT, LAST_ACK and CLOSING (Linux's tcp_reset_check); TIME_WAIT
// takes only rcv_nxt (Linux's default, net.ipv4.tcp_rfc1337=0). One
// elsewhere in the window draws a challenge ACK from Linux and changes
// nothing; one far outside it (more than 16 MiB) moves neither end. Where
// the middle may have missed some of what the sender sent (a connection
// picked up mid-stream, a quiet one waking) anything from rcv_nxt up to
// 16 MiB ahead is taken to be in place. The receiver's rcv_nxt counts
// what its peer sent, delivered or not: an RST overtaking held data, which
// Linux challenges, closes in the tracker.
//
// A SYN with a new sequence number on a synchronized connection draws a
// challenge ACK and changes nothing, neither the states nor the sequence
// space, so the RST that answers the challenge ACK, at the challenger's
// rcv_nxt, still closes it. A SYN_SENT socket answers an ACK that does not
// acknowledge its SYN (such as a challenge ACK) with an RST and keeps
// waiting: its RST does not move it.
//
// A challenge ACK is classified as what it is on the wire: a plain ack
// (or the first ACK of a FIN not yet acknowledged, a fin-ack or final-ack).
//
// A SYN from an endpoint in CLOSED or TIME_WAIT starts a new incarnation.
// When its receiver is still in TIME_WAIT (the server closed first), the
// new incarnation inherits that TIME_WAIT, with its sequence space, its
// rcv_nxt and its deadline: Linux takes the SYN only beyond rcv_nxt (or
// with a newer timestamp, which the tracker does not see: the SYN-ACK then
// corrects the server), and otherwise answers with a challenge ACK; the
// client's RST at its ack ends the TIME_WAIT, and the client's SYN
// retransmission opens the connection.
//
// A SYN that a client in TIME_WAIT did not send anew, its first SYN
// retransmitted and overtaken beyond the middle by the rest of the
// connection (seen in 2 of 10,000 connections whose first SYN-ACK was
// lost), also starts a new incarnation: a server with no socket left
// takes it for a new connection, and the middle cannot tell it from a new
// connect() on the same port. The client's TIME_WAIT answers the SYN-ACK
// with an ACK of the old connection, which the server in SYN_RCVD resets
// (an RST that does not end the server: see the sender moves) and which
// moves neither end; the middle takes the client for ESTABLISHED where
// its kernel stays in TIME_WAIT until the server's RST ends it. The
// client's RST answering the SYN-ACK retransmission ends both, as on the
// kernels (scenario stale-syn-after-close, and its kernel capture).
//
// # RSTs the middle sends (Tracker.Forge, Tracker.Retract)
//
// An RST that a reset action sends in an endpoint's name moves only its
// receiver: the endpoint it impersonates never sent it and goes on as
// before, until its peer's own RST answers its next segment. An exact one
// (at the receiver's rcv_nxt, as the middle builds it from the packet it
// replaces) is in place even where the middle's own view is off because
// that packet was seen and never delivered, unless the receiver has sent
// an acknowledgment of everything the impersonated endpoint sent: its
// rcv_nxt is then known, and an RST elsewhere (the seq of a spurious
// retransmission) is checked as any other. One a sequence number past
// draws a challenge ACK and moves nobody. Where the receiver got data
// that the replaced packet's acknowledgment does not cover (packets
// crossing) or missed some before it, the RST is not in place on the wire
// but is taken to be. When the replaced packet's sender is reset too,
// the packet's sequence space is taken back if it never reached the peer
// (the peer's rcv_nxt stays at the packet, where the sender's kernel RST
// lands), and taken forward again should a held copy of it be delivered
// after all.
//
// # Keepalives
//
// A keepalive probe (Keepalive) is an ACK without SYN, FIN and RST, with 0
// or 1 byte, one below the next sequence number expected of its sender,
// from an endpoint whose peer has acknowledged (by a delivered packet)
// everything it sent: Linux sends it one below snd_nxt without payload,
// other stacks repeat the last byte. Its answer (KeepaliveAck) is the
// peer's next packet if that is a pure ACK at the prober's next sequence
// number. A probe is never a retransmission and moves nothing: its
// receiver takes it for an old segment, answers it and discards it (only a
// segment still in flight ahead of it arrives, see the sender correction).
// The kinds' precedence, first match wins: RST; SYN (syn-ack, syn); FIN;
// keepalive; payload (data); then among pure ACKs fin-ack or final-ack,
// handshake-ack, keepalive-ack, and ack.
//
// Observation.Idle is the gap since the connection's previous packet,
// observed or delivered.
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
// established data phase, or its third ACK and data phase after a quiet
// handshake, or what follows its first FIN until the second in a quiet
// close) expires after QuietTimeout instead of IdleTimeout, is evicted
// only after every connection that is not quiet, and resynchronizes its
// sequence numbers on its next observed packet. A quiet handshake takes
// the third ACK as delivered (the server ESTABLISHED at once) until a
// retransmission of the SYN-ACK or the SYN shows it lost; a quiet close
// assumes nothing (the closer stays FIN_WAIT_1 until the peer's FIN).
//
// Entries live in a paged slab of 152-byte slots indexed by a map from 32
// bits of a seeded hash of the tuple to a slot, with intrusive int32 links
// for hash collisions, activity order (LRU) and TIME_WAIT deadlines: about
// 173 bytes per tracked connection in all. A ConnID packs the slot's
// generation and index (and the tracker's shard, see Config.Shards), so
// Deliver needs no lookup. Nth
// saturates at 255 for control kinds and at 2^32-1 for data and ack.
//
// A self-connect (source and destination are one socket) has one half:
// every packet is from the client, both reported states are that socket's,
// and it goes through the simultaneous-open path as on Linux.
package statetrack
