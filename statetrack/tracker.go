package statetrack

import (
	"fmt"
	"hash/maphash"
	"slices"
	"time"
)

// Defaults for the zero fields of Config.
const (
	DefaultMSL            = 30 * time.Second
	DefaultMaxConnections = 1_000_000
	DefaultIdleTimeout    = 10 * time.Minute
	// DefaultQuietTimeout is as long as Linux's conntrack keeps an
	// established connection without packets
	// (nf_conntrack_tcp_timeout_established, 5 days): past it the kernel
	// has forgotten the connection's quiet mark too.
	DefaultQuietTimeout = 5 * 24 * time.Hour
)

// reapPerObserve bounds how many expired connections Observe removes in
// passing, so that its cost stays flat; Expire removes all of them.
const reapPerObserve = 2

// Stats counts what happened to the tracker's table since New.
type Stats struct {
	// Connections counts entries created: first SYNs, mid-stream pickups
	// and new incarnations.
	Connections uint64
	// NewIncarnations counts SYNs that replaced a connection in TIME_WAIT
	// or CLOSED on the same tuple.
	NewIncarnations uint64
	// Midstream counts connections picked up after their handshake.
	Midstream uint64
	// Evicted counts connections removed because the table was full.
	Evicted uint64
	// TimeWaitExpired counts connections removed 2×MSL after TIME_WAIT.
	TimeWaitExpired uint64
	// IdleExpired counts connections removed after the idle timeout.
	IdleExpired uint64
	// Untracked counts packets of unknown tuples that created no entry: a
	// lone RST, or a segment without SYN, RST and ACK.
	Untracked uint64
	// Quieted counts connections that went quiet (Tracker.Quiet), each
	// time they did.
	Quieted uint64
}

// Add adds o's counters to s, e.g. to total the trackers of several queues.
func (s *Stats) Add(o Stats) {
	s.Connections += o.Connections
	s.NewIncarnations += o.NewIncarnations
	s.Midstream += o.Midstream
	s.Evicted += o.Evicted
	s.TimeWaitExpired += o.TimeWaitExpired
	s.IdleExpired += o.IdleExpired
	s.Untracked += o.Untracked
	s.Quieted += o.Quieted
}

// Tracker follows TCP connections from the middle of the path. See the
// package documentation for the model. A Tracker is not safe for
// concurrent use: one goroutine (for example one queue worker) owns it.
type Tracker struct {
	cfg                 Config
	tw, idle, quietIdle int64 // TIME_WAIT length (2×MSL), idle and quiet timeouts, in ns
	max                 int
	// shard is Config.Shard where it sits in a ConnID's low half, slotMask
	// the bits of that half left to the slot index.
	shard, slotMask uint32
	seed            maphash.Seed
	// index maps a tuple's hash to the head of its chain of slots.
	index map[uint32]int32
	pages []*[pageSize]conn
	used  int32 // slots handed out so far
	// free heads the list of free slots, linked by their activity links.
	free int32
	// lru orders the connections by activity; quiet ones are on quiet.
	lru, quiet list
	// timeWait orders the connections with an endpoint in TIME_WAIT by
	// deadline.
	timeWait list
	n        int
	stats    Stats
}

// New returns an empty tracker. Zero fields of cfg select the defaults:
// MSL 30s, MaxConnections 1,000,000, IdleTimeout 10m, QuietTimeout 5 days,
// Shard 0 of 1. It panics when cfg.Shard is not below cfg.Shards or
// cfg.MaxConnections is above MaxConnectionsFor(cfg.Shards).
func New(cfg Config) *Tracker {
	if cfg.MSL <= 0 {
		cfg.MSL = DefaultMSL
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.QuietTimeout <= 0 {
		cfg.QuietTimeout = DefaultQuietTimeout
	}
	cfg.Shards = max(cfg.Shards, 1)
	if cfg.Shard < 0 || cfg.Shard >= cfg.Shards {
		panic(fmt.Sprintf("statetrack: shard %d of %d", cfg.Shard, cfg.Shards))
	}
	if m := MaxConnectionsFor(cfg.Shards); cfg.MaxConnections > m {
		panic(fmt.Sprintf("statetrack: %d connections with %d shards, at most %d", cfg.MaxConnections, cfg.Shards, m))
	}
	slotBits := 32 - shardBits(cfg.Shards)
	return &Tracker{
		cfg:       cfg,
		tw:        int64(2 * cfg.MSL),
		idle:      int64(cfg.IdleTimeout),
		quietIdle: int64(cfg.QuietTimeout),
		max:       cfg.MaxConnections,
		shard:     uint32(uint64(cfg.Shard) << slotBits),
		slotMask:  uint32(uint64(1)<<slotBits - 1),
		seed:      maphash.MakeSeed(),
		index:     make(map[uint32]int32),
		free:      none,
		lru:       newList(activityLinks),
		quiet:     newList(activityLinks),
		timeWait:  newList(timeWaitLinks),
	}
}

// Len returns the number of tracked connections.
func (t *Tracker) Len() int { return t.n }

// Stats returns the table's counters.
func (t *Tracker) Stats() Stats { return t.stats }

// Observe classifies seg as its sender emits it, counts it and moves the
// sender's state (never the receiver's: see Deliver). It creates the
// connection entry when needed:
//
//   - a SYN of an unknown tuple makes its sender the client;
//   - a SYN from an endpoint in CLOSED or TIME_WAIT starts a new
//     incarnation (the old entry goes with reason Replaced);
//   - any other segment with ACK of an unknown tuple is a mid-stream
//     pickup (a SYN-ACK: client SYN_SENT, server LISTEN; anything else:
//     both ESTABLISHED) before the packet's own move, with the server
//     found by Config.ServerPorts (else the packet's destination);
//   - a lone RST, or a segment with none of SYN, RST and ACK, of an
//     unknown tuple creates nothing: the Observation has ConnID 0, Nth 0,
//     both states CLOSED, and From decided by the server ports.
//
// Midstream is reported on every packet of a connection picked up
// mid-stream, NewConn and NewIncarnation only on the packet that created
// the entry. Observe also removes a few expired connections in passing,
// and the packet's own connection first if it has expired by now; their
// OnGone calls (and that of a replaced incarnation) come before Observe
// returns. OnGone must not call back into the tracker.
func (t *Tracker) Observe(seg *Segment, now time.Time) (o Observation) {
	t.observe(&o, seg, now, false)
	return o
}

// Forge observes and delivers at once an RST that the middle sends in
// the name of seg.Src (a reset action sends it in place of a packet), and
// returns the observation and both endpoints' states after it. It is
// classified as that endpoint's, but that endpoint never sent it: its
// half stays as it was (state, counts, sequence numbers) and it goes on
// until it hears from its peer, as a real stack does (an endpoint reset
// by the middle answers its peer's next segment with an RST of its own).
// Only the receiver moves. exact reports whether the RST is meant to
// carry the sequence number its receiver expects, built from the packet
// it replaces: the tracker takes it to be in place even where its own
// view is off (that packet was seen but never delivered), unless the
// receiver has acknowledged everything the impersonated endpoint sent,
// which fixes its rcv_nxt (a spurious retransmission, say): then the RST
// must lie there. An RST that is not exact lies one past it, inside the
// window: a challenge ACK answers it and nothing moves (RFC 5961 §3.2).
func (t *Tracker) Forge(seg *Segment, now time.Time, exact bool) (Observation, [2]State) {
	var o Observation
	t.observe(&o, seg, now, true)
	i, ok := t.byID(o.ConnID)
	if !ok || !exact {
		return o, o.After
	}
	s, _ := t.at(i).ends(o.From)
	nxt, bits := s.nxt, s.bits&(hasNxt|loose)
	if !s.has(hasNxt) || s.has(loose) || !s.has(ackSeen) {
		s.nxt, s.bits = seg.Seq, s.bits&^loose|hasNxt
	}
	after, _ := t.Deliver(&o, now)
	if i, ok := t.byID(o.ConnID); ok {
		s, _ := t.at(i).ends(o.From)
		s.nxt, s.bits = nxt, s.bits&^(hasNxt|loose)|bits
	}
	return o, after
}

// Retract takes back the sequence space of the packet of o, which never
// reached its receiver and never will: a reset dropped it and reset its
// sender too, which will not send it again. Its peer still expects the
// packet's own sequence number, and the sender's kernel, answering the
// peer's next segment with an RST, uses that number: the RST is then in
// place, as on the wire. Nothing changes for a SYN, a packet without
// sequence space, one that a later packet of its sender overtook, or one
// whose space already reached the peer (a retransmission of a delivered
// segment, a keepalive probe carrying an acknowledged byte). Should a
// held copy of the packet be delivered after all, Deliver takes the space
// forward again.
func (t *Tracker) Retract(o *Observation) {
	i, ok := t.byID(o.ConnID)
	n := o.Seg.SeqLen()
	if !ok || o.Seg.Flags&SYN != 0 || n == 0 {
		return
	}
	if s, _ := t.at(i).ends(o.From); s.has(hasNxt) && s.has(unreached) && s.nxt == o.Seg.Seq.Add(n) {
		s.nxt = o.Seg.Seq
		s.bits = s.bits&^ackSeen | retracted
	}
}

// observe is Observe writing into o (zero), or Forge's with forged: the
// sender's half is left as it was.
func (t *Tracker) observe(o *Observation, seg *Segment, now time.Time, forged bool) {
	ns := now.UnixNano()
	t.reap(ns, reapPerObserve)
	o.Seg = *seg
	k, srcIsA := packKey(seg.Src, seg.Dst)
	h := t.hash(&k)
	i := t.find(h, &k)
	if i != none {
		if at, why := t.deadline(t.at(i)); at <= ns {
			t.remove(i, why, at)
			i = none
		}
	}
	if i != none && seg.Flags&(SYN|ACK|RST) == SYN {
		c := t.at(i)
		if s, _ := c.ends(c.sideOf(srcIsA)); s.state == Closed || s.state == TimeWait {
			i = t.reincarnate(i, h, &k, srcIsA, seg, ns)
			o.NewIncarnation, o.NewConn = true, true
		}
	}
	switch {
	case i == none:
		if i = t.create(h, &k, srcIsA, seg, ns); i == none {
			t.untracked(o)
			return
		}
		o.NewConn = true
	case !o.NewConn:
		if gap := ns - t.at(i).last; gap > 0 {
			o.Idle = time.Duration(gap)
		}
		t.touch(i, ns)
	}
	c := t.at(i)
	if o.From = c.sideOf(srcIsA); o.From == Client {
		o.Client, o.Server = seg.Src, seg.Dst
	} else {
		o.Client, o.Server = seg.Dst, seg.Src
	}
	o.ConnID = t.id(i)
	o.Midstream = c.flags&midstream != 0
	s, r := c.ends(o.From)
	woke := c.flags&quiet != 0
	if woke {
		t.setQuiet(i, false)
		if !c.unassume(o.From, seg) {
			resync(s, r, seg)
		}
	}
	if !woke && c.flags&quietPending == 0 || seg.Flags&(SYN|FIN|RST) != 0 {
		// A quiet close ends at its next FIN, RST or SYN, and when the
		// connection's previous packet left it awake: that verdict was
		// written without the quiet bit, or will be, and the kernel's
		// quiet close is over (see QuietClosing). A verdict still
		// pending (this packet shares its burst) asks for the quiet bit.
		c.flags &^= quietClosing
	}
	c.flags &^= quietPending
	tw := false
	if s.move != 0 || s.state == SynSent {
		tw = precorrect(s, r, seg)
	}
	o.Before = c.states()
	var res sent
	if forged {
		sender := *s
		res = send(s, r, seg)
		*s = sender
	} else {
		res = send(s, r, seg)
	}
	o.Kind, o.Nth, o.Retransmission, o.Closer = res.kind, res.nth, res.retx, res.closer
	o.After = c.states()
	t.syncTimeWait(i, ns, tw)
}

// reincarnate replaces the connection in slot i by a new incarnation whose
// first packet is the SYN seg, and returns the new slot. When the SYN's
// receiver is still in TIME_WAIT (its peer closed last), that TIME_WAIT
// outlives the old incarnation: the new one inherits the receiver's
// sequence space, its rcv_nxt (the end of the SYN sender's old sequence
// space) and its deadline, and the receiver decides whether it takes the
// SYN.
func (t *Tracker) reincarnate(i int32, h uint32, k *tupleKey, srcIsA bool, seg *Segment, now int64) int32 {
	c := t.at(i)
	if s, r := c.ends(c.sideOf(srcIsA)); r != s && r.state == TimeWait {
		return t.inheritTimeWait(i, h, k, srcIsA, seg, now)
	}
	t.remove(i, Replaced, now)
	t.stats.NewIncarnations++
	return t.create(h, k, srcIsA, seg, now)
}

// inheritTimeWait is reincarnate for a SYN whose receiver is in TIME_WAIT.
func (t *Tracker) inheritTimeWait(i int32, h uint32, k *tupleKey, srcIsA bool, seg *Segment, now int64) int32 {
	c := t.at(i)
	s, r := c.ends(c.sideOf(srcIsA))
	peer, rcvNxt, twAt := *r, s.nxt, c.twAt
	t.remove(i, Replaced, now)
	t.stats.NewIncarnations++
	i = t.create(h, k, srcIsA, seg, now)
	c = t.at(i)
	s, r = c.ends(c.sideOf(srcIsA))
	*r = half{isn: peer.isn, nxt: peer.nxt, finSeq: peer.finSeq, state: TimeWait,
		bits: peer.bits & (hasISN | hasNxt | finSent)}
	s.nxt = rcvNxt
	s.bits |= hasNxt | synPending
	t.twInsert(i, twAt)
	return i
}

// Deliver records that the packet of o reached its receiver at now and
// moves the receiver's state. Call it once per arrival: never for a
// dropped packet, when released for a delayed one, once per copy for a
// duplicated one. It returns both endpoints' states after the move and
// whether the receiver's state changed. If o's connection incarnation is
// gone (replaced, expired, evicted, or never tracked), Deliver does
// nothing and returns both CLOSED and false.
func (t *Tracker) Deliver(o *Observation, now time.Time) (after [2]State, changed bool) {
	i, ok := t.byID(o.ConnID)
	if !ok {
		return after, false
	}
	ns := now.UnixNano()
	c := t.at(i)
	if at, why := t.deadline(c); at <= ns {
		t.remove(i, why, at)
		return after, false
	}
	t.touch(i, ns)
	s, r := c.ends(o.From)
	s.reached(&o.Seg)
	old := r.state
	var tw bool
	if o.Kind == Keepalive {
		tw = receiveProbe(r, s)
	} else {
		tw = receive(r, s, &o.Seg)
	}
	t.syncTimeWait(i, ns, tw)
	return c.states(), r.state != old
}

// Quiet records that the connection connID stops reaching the tracker at
// now: the live path lets some of its packets bypass the queue (only when
// no rule could act on them). Three moments are meant:
//
//   - both endpoints ESTABLISHED (the data phase): nothing is assumed;
//   - after a SYN-ACK, the client ESTABLISHED and the server SYN_RCVD (a
//     quiet handshake, see QuietHandshake: the client's third ACK passes
//     unseen): the third
//     ACK is taken as delivered, from the client's next sequence number
//     and acknowledging the server's SYN, so the server goes ESTABLISHED
//     at once, with its sequence bookkeeping as if that ACK had arrived
//     (it is not counted: Nth of a later handshake-ack counts only the
//     ones observed). While no other packet of the connection has been
//     observed, a retransmission of the server's SYN-ACK (the third ACK
//     was lost), of the client's SYN (the SYN-ACK was lost beyond the
//     middle), the third ACK itself (queued before the bypass began) or
//     a bare RST of the server before its sequence space (the answer of
//     SYN_RCVD to an unacceptable ACK, such as an old connection's)
//     takes that back: the server is SYN_RCVD again, nothing is
//     resynchronized, and the packet is classified as it would be had the
//     connection not gone quiet;
//   - after a connection's first FIN, the closer FIN_WAIT_1 and its peer
//     CLOSE_WAIT (a quiet close: the ACK of the FIN, and the data and
//     ACKs of a half-close, pass unseen): nothing is assumed, the closer
//     stays FIN_WAIT_1 until the next observed packet, in the common case
//     the peer's FIN, which acknowledges the first and takes the closer
//     to TIME_WAIT directly (FIN_WAIT_2 goes unseen).
//
// What the unseen packets would have taught is then missing, so the
// connection is handled thus until its next observed packet, which wakes
// it:
//
//   - it expires after Config.QuietTimeout without observed packets
//     instead of IdleTimeout (its data keeps flowing unseen), and a full
//     table evicts it only once no connection that is not quiet is left;
//   - on waking, the sequence numbers seen so far are stale (the data
//     phase may have moved them by more than 2^31, past any wrap-safe
//     comparison): the sender's next sequence number is taken from the
//     waking packet, the receiver's from its acknowledgment, so that a
//     FIN after a long transfer is not taken for a retransmission; an
//     endpoint that sent its FIN has sent nothing since, so its next
//     sequence number stays (a retransmission of its FIN is one), and so
//     does a move a FIN made (see the sender correction: a FIN of the
//     peer crossing the first FIN still makes a simultaneous close). An
//     RST that wakes the connection cannot be checked against an endpoint
//     whose data went unseen (its own sequence number is the only one
//     known): it is accepted, as it is after a mid-stream pickup;
//   - Nth of data and ack counts only the packets observed.
//
// Observe reports every packet of a quiet connection as of the same
// connection (it is never picked up mid-stream anew). Quiet does nothing
// for a connection that is gone; it reports whether the connection is
// (now) quiet.
func (t *Tracker) Quiet(connID uint64, now time.Time) bool {
	_, _, ok := t.QuietInfo(connID, now)
	return ok
}

// QuietInfo is Quiet reporting also the connection after it (info) and
// whether a quiet handshake moved the server to ESTABLISHED (moved); ok
// is Quiet's answer (info is zero when it is false).
func (t *Tracker) QuietInfo(connID uint64, now time.Time) (info ConnInfo, moved, ok bool) {
	i, ok := t.byID(connID)
	if !ok {
		return ConnInfo{}, false, false
	}
	c := t.at(i)
	c.flags &^= quietPending
	if c.flags&quiet == 0 {
		t.stats.Quieted++
		t.setQuiet(i, true)
		moved = c.assumeAck()
	}
	t.touch(i, now.UnixNano())
	return t.info(i), moved, true
}

// Quieting records that the verdict of the packet of connection connID
// just observed asks to let the connection go quiet: the live path
// collects verdicts and writes them a burst at a time, so the verdict may
// reach the kernel (Quiet) or be declined (QuietDeclined) only after more
// packets of the connection are observed. Until then those packets count
// as following a quiet verdict (see QuietClosing). A verdict asking so
// after the connection's first FIN, which left the sender FIN_WAIT_1 and
// its peer CLOSE_WAIT, starts a quiet close. Quieting reports whether the
// connection is in a quiet close (QuietClosing); it does nothing for a
// connection that is gone.
func (t *Tracker) Quieting(connID uint64) (closing bool) {
	i, ok := t.byID(connID)
	if !ok {
		return false
	}
	c := t.at(i)
	c.flags |= quietPending
	if cl, sv := c.h[Client].state, c.h[Server].state; cl == FinWait1 && sv == CloseWait || cl == CloseWait && sv == FinWait1 {
		c.flags |= quietClosing
	}
	return c.flags&quietClosing != 0
}

// QuietDeclined records that the verdict Quieting announced for the
// connection connID will not carry the quiet bit (the live path declined
// it: more packets waited unread in the queue, or a later verdict of the
// connection does not let it go quiet): the connection stays awake, and a
// quiet close it started is over.
func (t *Tracker) QuietDeclined(connID uint64) {
	if i, ok := t.byID(connID); ok {
		t.at(i).flags &^= quietPending | quietClosing
	}
}

// QuietClosing reports whether the connection connID is in a quiet close:
// the verdict of its first FIN asked to let it go quiet (see Quieting), no
// FIN, RST or SYN of it has been observed since, that verdict was not
// declined, and each packet of it observed meanwhile was followed by
// Quieting again. Those packets were queued before the kernel let the rest
// bypass (the ACK of that FIN, say), some perhaps in the FIN's own burst:
// their verdicts must keep the close quiet, or the kernel wakes it. Once
// one of them is not followed by Quieting, or is declined, the kernel has
// woken the close for good (after a first FIN only the FIN's own verdict
// makes a connection quiet), and QuietClosing reports false.
func (t *Tracker) QuietClosing(connID uint64) bool {
	i, ok := t.byID(connID)
	return ok && t.at(i).flags&quietClosing != 0
}

// QuietHandshake reports whether the connection connID may go quiet after
// the SYN-ACK just observed (a quiet handshake, see Quiet): the client is
// ESTABLISHED, the server SYN_RCVD waiting for the ACK of its SYN-ACK with
// nothing else pending, and no retransmission of the client's SYN or of
// the server's SYN-ACK has been seen. The server answers each SYN
// retransmission with one more SYN-ACK, which, seen after the third ACK
// had passed unseen and reached it, would take the assumption back where
// the server is ESTABLISHED (and its data unseen); and a retransmitted
// SYN-ACK races the client's own SYN retransmission (both timers start
// at the first SYN-ACK's loss), which may reach the server after the
// unseen third ACK: such a handshake is queued to its end.
func (t *Tracker) QuietHandshake(connID uint64) bool {
	i, ok := t.byID(connID)
	return ok && t.at(i).ackAssumable()
}

// SentPast reports whether each sender of the connection connID is past
// the number of packets of each data-phase kind that b holds for it: it
// has sent that many (a bound of 0 always holds), so that no packet it
// sends later can be the one with that Observation.Nth; false for a
// connection that is gone. A rule that selects one Match.Nth of a kind
// can act on no later packet of a sender past it. The counts only grow
// (a quiet connection's packets go uncounted), and saturate: a count at
// its ceiling is past only lower bounds.
func (t *Tracker) SentPast(connID uint64, b *DataBounds) bool {
	i, ok := t.byID(connID)
	if !ok {
		return false
	}
	c := t.at(i)
	for side := range b {
		h := &c.h[side]
		if c.flags&selfConn != 0 {
			h = &c.h[Client]
		}
		for j, k := range DataKinds {
			if n := b[side][j]; n > 0 && !h.past(k, n) {
				return false
			}
		}
	}
	return true
}

// ackAssumable is QuietHandshake's test of the connection.
func (c *conn) ackAssumable() bool {
	cl, sv := &c.h[Client], &c.h[Server]
	return c.flags&selfConn == 0 && cl.state == Established && sv.state == SynRcvd && cl.move|sv.move == 0 &&
		cl.has(hasNxt) && sv.has(hasISN) && sv.has(synUnacked) && !sv.has(ackSeen|acked) && cl.count(Syn) == 1 && sv.count(SynAck) == 1
}

// assumeAck takes the client's third ACK as delivered when the connection
// goes quiet after its SYN-ACK (see Tracker.Quiet), and reports whether it
// did: only where QuietHandshake allows it.
func (c *conn) assumeAck() bool {
	if !c.ackAssumable() {
		return false
	}
	cl, sv := &c.h[Client], &c.h[Server]
	seg := Segment{Flags: ACK, Seq: cl.nxt, Ack: sv.isn.Add(1)}
	n := cl.ctl[HandshakeAck-1]
	send(cl, sv, &seg)
	cl.ctl[HandshakeAck-1] = n
	receive(sv, cl, &seg)
	if sv.state != Established {
		return false
	}
	c.flags |= assumedAck
	return true
}

// unassume takes back the third ACK that a quiet handshake took as
// delivered (assumeAck), when seg, sent by the endpoint from and the
// first packet observed since, shows that it never arrived or has yet to
// (see Tracker.Quiet), and reports whether it did: the connection then
// stands as it did after the SYN-ACK, with nothing to resynchronize.
func (c *conn) unassume(from Side, seg *Segment) bool {
	if c.flags&assumedAck == 0 {
		return false
	}
	c.flags &^= assumedAck
	cl, sv := &c.h[Client], &c.h[Server]
	switch f := seg.Flags & (SYN | ACK | FIN | RST); {
	case from == Server && f == SYN|ACK && seg.Seq == sv.isn: // the third ACK was lost
	case from == Client && f == SYN && seg.Seq == cl.isn: // the SYN-ACK was lost beyond the middle
	case from == Client && f == ACK && seg.Len == 0 && seg.Seq == cl.nxt && seg.Ack == sv.isn.Add(1): // the third ACK, late
	case from == Server && f == RST && !seg.Seq.InWindow(sv.isn.Add(1), 1<<31):
		// A bare RST before the server's own sequence space: it answers an
		// unacceptable ACK (<SEQ=SEG.ACK><CTL=RST>) in SYN_RCVD, such as an
		// old connection's from a client in TIME_WAIT (a stale SYN). An
		// abort of an ESTABLISHED server carries ACK, and after more than
		// 2 GiB of unseen data its sequence number may lie anywhere.
	default:
		return false
	}
	sv.state = SynRcvd
	sv.bits = sv.bits&^(ackSeen|acked) | synUnacked
	return true
}

// resync forgets the sequence numbers that a quiet connection's unseen
// packets made stale (see Quiet): s sent seg, r receives it. An endpoint
// that sent its FIN keeps its own, and a move made by a FIN is kept: that
// FIN is where it was.
func resync(s, r *half, seg *Segment) {
	if s.has(hasNxt) && !s.has(finSent) && seg.Flags&SYN == 0 {
		s.nxt = seg.Seq
		s.bits &^= acked
	}
	if r.has(hasNxt) && !r.has(finSent) && seg.Flags&ACK != 0 {
		r.nxt = seg.Ack
		r.bits |= loose
	}
	if s.move&mvFin == 0 {
		s.move = 0
	}
	if r.move&mvFin == 0 {
		r.move = 0
	}
}

// Expire removes every connection whose TIME_WAIT (2×MSL after an endpoint
// last entered it) or idle timeout has run out by now, in deadline order,
// calling Config.OnGone for each.
func (t *Tracker) Expire(now time.Time) { t.reap(now.UnixNano(), -1) }

// reap removes up to limit expired connections (all of them for a
// negative limit), earliest deadline first.
func (t *Tracker) reap(now int64, limit int) {
	for n := 0; n != limit; n++ {
		i, at, why := t.sooner(none, 0, 0, t.lru.tail)
		i, at, why = t.sooner(i, at, why, t.quiet.tail)
		i, at, why = t.sooner(i, at, why, t.timeWait.head)
		if i == none || at > now {
			return
		}
		t.remove(i, why, at)
	}
}

// sooner returns slot j with its deadline and reason if it expires before
// slot i (at, why) or i is none, else i, at, why; j may be none.
func (t *Tracker) sooner(i int32, at int64, why GoneReason, j int32) (int32, int64, GoneReason) {
	if j != none {
		if jat, jwhy := t.deadline(t.at(j)); i == none || jat < at {
			return j, jat, jwhy
		}
	}
	return i, at, why
}

// deadline returns when connection c expires and why.
func (t *Tracker) deadline(c *conn) (at int64, why GoneReason) {
	idle := t.idle
	if c.flags&quiet != 0 {
		idle = t.quietIdle
	}
	at, why = c.last+idle, IdleExpired
	if c.flags&inTimeWait != 0 && c.twAt+t.tw < at {
		at, why = c.twAt+t.tw, TimeWaitExpired
	}
	return at, why
}

// syncTimeWait keeps slot i's TIME_WAIT membership in line with its
// endpoints' states; restart (re)starts the timer at now.
func (t *Tracker) syncTimeWait(i int32, now int64, restart bool) {
	c := t.at(i)
	st := c.states()
	switch {
	case st[Client] != TimeWait && st[Server] != TimeWait:
		if c.flags&inTimeWait != 0 {
			t.twUnlink(i)
		}
	case restart || c.flags&inTimeWait == 0:
		t.twPushBack(i, now)
	}
}

// create makes the entry for the first packet seg of an unknown tuple and
// returns its slot, or none if seg creates no entry. A full table evicts
// its least recently active connection first.
func (t *Tracker) create(h uint32, k *tupleKey, srcIsA bool, seg *Segment, now int64) int32 {
	f := seg.Flags
	if f&RST != 0 || !valid(seg) {
		return none
	}
	if t.n >= t.max {
		victim := t.lru.tail
		if victim == none {
			victim = t.quiet.tail
		}
		t.remove(victim, Evicted, now)
	}
	i := t.alloc(h, k, now)
	c := t.at(i)
	syn := f&(SYN|ACK) == SYN
	clientIsSrc := syn || (f&SYN == 0 && !t.srcIsServer(seg))
	if clientIsSrc != srcIsA {
		c.flags |= clientIsB
	}
	if k.self() {
		c.flags |= selfConn
	}
	t.stats.Connections++
	s, r := c.ends(c.sideOf(srcIsA))
	switch {
	case syn:
		r.state = Listen // overwritten by Closed for a self-connect
		s.state = Closed
	case f&SYN != 0: // a SYN-ACK: the client's SYN was missed
		r.state, s.state = SynSent, Listen
		r.isn, r.nxt = seg.Ack-1, seg.Ack
		r.bits |= hasISN | hasNxt
	default:
		r.state, s.state = Established, Established
		r.nxt = seg.Ack
		r.bits |= hasNxt | loose
	}
	if !syn {
		c.flags |= midstream
		t.stats.Midstream++
	}
	return i
}

// srcIsServer reports whether a mid-stream pickup makes seg's source the
// server: its port is a server port and its destination's is not.
func (t *Tracker) srcIsServer(seg *Segment) bool {
	return t.serverPort(seg.Src.Port()) && !t.serverPort(seg.Dst.Port())
}

// SetServerPorts replaces Config.ServerPorts, for connections picked up
// from now on (a reload that changes the intercepted ports). It copies
// ports.
func (t *Tracker) SetServerPorts(ports []uint16) { t.cfg.ServerPorts = slices.Clone(ports) }

func (t *Tracker) serverPort(p uint16) bool {
	for _, q := range t.cfg.ServerPorts {
		if q == p {
			return true
		}
	}
	return false
}

// untracked fills o for a packet that belongs to no connection.
func (t *Tracker) untracked(o *Observation) {
	t.stats.Untracked++
	seg := &o.Seg
	o.From, o.Client, o.Server = Client, seg.Src, seg.Dst
	if t.srcIsServer(seg) {
		o.From, o.Client, o.Server = Server, seg.Dst, seg.Src
	}
	var blank half
	o.Kind = classify(&blank, &blank, seg)
}

// remove takes slot i out of the table and reports it through OnGone.
func (t *Tracker) remove(i int32, why GoneReason, at int64) {
	c := t.at(i)
	g := Gone{ConnID: t.id(i), Reason: why, Before: c.states(), At: time.Unix(0, at)}
	g.Client, g.Server = c.clientServer()
	g.After = g.Before
	switch why {
	case TimeWaitExpired:
		t.stats.TimeWaitExpired++
		for s, st := range g.After {
			if st == TimeWait {
				g.After[s] = Closed
			}
		}
	case IdleExpired:
		t.stats.IdleExpired++
	case Evicted:
		t.stats.Evicted++
	}
	t.release(i)
	if t.cfg.OnGone != nil {
		t.cfg.OnGone(g)
	}
}
