package statetrack

import "github.com/tcpchaos/tcpchaos/statetrack/seqnum"

// half is one endpoint of a connection as seen from the middle: its
// sequence space, its FIN, its inferred state and its per-kind packet
// counters. It is 36 bytes.
type half struct {
	// isn is the endpoint's initial sequence number (valid with hasISN).
	isn seqnum.Value
	// nxt is the end of the highest sequence space seen from the endpoint
	// (valid with hasNxt): everything before it was already sent once.
	nxt seqnum.Value
	// finSeq is the sequence number of the endpoint's FIN (valid with
	// finSent).
	finSeq seqnum.Value
	// data and acks count the endpoint's data and plain ack packets.
	data, acks uint32
	// ctl counts the endpoint's control packets, indexed by Kind-1 for
	// Syn..KeepaliveAck. The counts saturate at 255.
	ctl   [KeepaliveAck]uint8
	state State
	bits  halfBits
	// undo is the state before the move recorded in move.
	undo State
	// move records the last delivery that moved the endpoint's state with
	// a FIN or with data completing a handshake, until a packet of the
	// endpoint confirms or contradicts its arrival (see correct).
	move moveBits
}

// halfBits are the boolean facts of a half.
type halfBits uint16

const (
	hasISN halfBits = 1 << iota
	hasNxt
	// finSent: the endpoint sent a FIN (finSeq is valid).
	finSent
	// finUnacked: the endpoint's last FIN (or FIN retransmission) has not
	// been acknowledged yet by a packet from the peer. The peer's next pure
	// ACK covering it is a fin-ack or a final-ack.
	finUnacked
	// synUnacked: the endpoint sent a SYN-ACK that no packet from the peer
	// has acknowledged yet. The peer's next pure ACK covering it is a
	// handshake-ack.
	synUnacked
	// passive: the endpoint's FIN was sent after it had received the
	// peer's FIN.
	passive
	// loose: nxt was inferred from the peer's acknowledgment (a mid-stream
	// pickup, a quiet connection waking), not from a packet of the
	// endpoint's own: it may have sent more than the middle saw.
	loose
	// synPending: the endpoint sent a SYN for a new incarnation that its
	// peer, still in TIME_WAIT, has not taken yet: nxt is still the end of
	// the previous incarnation's sequence space (the peer's rcv_nxt), isn
	// the new SYN's.
	synPending
	// acked: the peer's last delivered acknowledgment covers everything
	// the endpoint sent (up to nxt): it has nothing unacknowledged, so a
	// segment one below nxt is a keepalive probe.
	acked
	// probing: the endpoint's last packet was a keepalive probe that the
	// peer has not answered yet; the peer's next pure ACK at nxt is its
	// answer (a keepalive-ack).
	probing
	// unreached: the segment that brought nxt has not reached the peer
	// (dropped, held, or taken back by Tracker.Retract): the peer's
	// rcv_nxt lies before nxt. Only a segment with sequence space sets or
	// clears it.
	unreached
	// ackSeen: the peer sent an acknowledgment of nxt (delivered or not):
	// its rcv_nxt is nxt, until the endpoint sends more.
	ackSeen
	// retracted: Tracker.Retract took nxt back to the start of a segment
	// that never reached the peer; a copy of it that was held all along
	// and arrives after all takes nxt forward again (see reached).
	retracted
)

// moveBits describe a delivery that moved its receiver (what the segment
// carried, as the receiver saw it) and where that move stands.
type moveBits uint8

const (
	mvFin     moveBits = 1 << iota // the segment carried a FIN (else it was data completing a handshake)
	mvAcksSyn                      // it (or a later segment of the peer) acknowledged the receiver's SYN
	mvAcksFin                      // ... the receiver's FIN
	// mvDelivered: the move is applied and not yet confirmed by the
	// receiver's acknowledgment.
	mvDelivered
	// mvInFlight: the receiver's acknowledgment showed that the segment had
	// not reached it yet; the move was taken back and waits for its arrival.
	mvInFlight

	arrivalBits = mvFin | mvAcksSyn | mvAcksFin
)

func (h *half) has(b halfBits) bool { return h.bits&b != 0 }

// count returns how many packets of kind k the endpoint sent.
func (h *half) count(k Kind) uint32 {
	switch k {
	case Data:
		return h.data
	case Ack:
		return h.acks
	}
	return uint32(h.ctl[k-1])
}

// past reports whether the endpoint sent n packets of kind k or more, and
// none it sends later can be the nth (its count saturates at a ceiling).
func (h *half) past(k Kind, n uint32) bool {
	c, ceiling := h.count(k), uint32(^uint8(0))
	if k == Data || k == Ack {
		ceiling = ^uint32(0)
	}
	return c > n || c == n && c < ceiling
}

// inc counts one more packet of kind k and returns the new count, its nth.
func (h *half) inc(k Kind) uint32 {
	switch k {
	case Data:
		if h.data < ^uint32(0) {
			h.data++
		}
		return h.data
	case Ack:
		if h.acks < ^uint32(0) {
			h.acks++
		}
		return h.acks
	}
	if h.ctl[k-1] < ^uint8(0) {
		h.ctl[k-1]++
	}
	return uint32(h.ctl[k-1])
}

// acksSyn reports whether ack acknowledges the endpoint's SYN (loosely: it
// lies after the ISN; with the ISN unknown, any ACK does).
func (h *half) acksSyn(ack seqnum.Value) bool {
	return !h.has(hasISN) || h.isn.LessThan(ack)
}

// acksFin reports whether ack acknowledges the endpoint's FIN.
func (h *half) acksFin(ack seqnum.Value) bool {
	return h.has(finSent) && h.finSeq.LessThan(ack)
}

// rstWindow is how far from the next sequence number expected of its
// sender an RST may lie and still be its sender's own (see owns), and how
// far ahead of it one is still in place when the middle may have missed
// some of what the sender sent (see rstInPlace): a loose stand-in for the
// receiver's window, which the middle cannot know exactly (the window
// scale is not on every packet).
const rstWindow seqnum.Size = 1 << 24

// valid reports whether a receiver processes seg at all. A segment with
// none of SYN, RST and ACK set (a bare FIN or no flags at all) is discarded
// by every RFC 9293 stack in a synchronized state ("if the ACK bit is off,
// drop the segment"), so it moves no state and marks no sequence space.
func valid(seg *Segment) bool { return seg.Flags&(SYN|RST|ACK) != 0 }

// classify returns the kind of seg sent by s to r, before any counter or
// state is touched. s and r are the same half for a self-connect.
func classify(s, r *half, seg *Segment) Kind {
	f := seg.Flags
	switch {
	case f&RST != 0:
		return Rst
	case f&SYN != 0:
		if f&ACK != 0 {
			return SynAck
		}
		return Syn
	case f&FIN != 0:
		return Fin
	case probe(s, seg):
		return Keepalive
	case seg.Len > 0:
		return Data
	case f&ACK == 0:
		return Ack
	case r.has(finUnacked) && r.acksFin(seg.Ack):
		if s.has(finSent) {
			return FinalAck
		}
		return FinAck
	case r.has(synUnacked) && r.acksOnlySent(seg.Ack):
		return HandshakeAck
	case r.has(probing) && seg.Ack == r.nxt:
		return KeepaliveAck
	}
	return Ack
}

// probe reports whether seg, which has neither SYN, FIN nor RST, is a
// keepalive probe of s: an ACK one below the next sequence number
// expected of s, carrying 0 or 1 byte, from an endpoint with nothing
// unacknowledged. Linux sends it without payload (tcp_write_wakeup), some
// stacks with one byte already acknowledged; Linux's zero-window probe
// looks the same when the endpoint has unsent data only, and is one too.
func probe(s *half, seg *Segment) bool {
	return seg.Flags&ACK != 0 && seg.Len <= 1 && s.has(acked) && seg.Seq == s.nxt-1
}

// retransmitted reports whether a packet of kind k repeats something s
// already sent: for SYN and SYN-ACK, an earlier one of the same kind with
// the same ISN; for the pure ACKs of the handshake and the close, an
// earlier one in the same role; for data and FIN, sequence space already
// seen. Plain ACKs and RSTs occupy no sequence space and are never
// retransmissions.
func retransmitted(s *half, k Kind, seg *Segment) bool {
	switch k {
	case Syn, SynAck:
		return s.count(k) > 0 && s.has(hasISN) && seg.Seq == s.isn
	case HandshakeAck, FinAck, FinalAck:
		return s.count(k) > 0
	case Data, Fin:
		return s.has(hasNxt) && seg.Seq.LessThan(s.nxt)
	}
	return false
}

// sent is what the sender's side of the machine reports for one packet.
type sent struct {
	kind   Kind
	nth    uint32
	retx   bool
	closer Closer
}

// challenged reports whether seg, sent by s, is a SYN that RFC 5961 §4
// answers with a challenge ACK and that changes nothing: one with a new
// sequence number on a synchronized connection. It is not a new sequence
// space either. (A repeat of the endpoint's own SYN or SYN-ACK changes
// nothing anyway.)
func challenged(s *half, seg *Segment) bool {
	return seg.Flags&SYN != 0 && s.synchronized() && (!s.has(hasISN) || seg.Seq != s.isn)
}

// precorrect applies the sender correction (see correct) to the sender s
// of seg, which has a move remembered or is taken for SYN_SENT, when seg
// can show anything: before the tracker takes the states before the
// packet and send classifies it. It reports whether s entered TIME_WAIT.
func precorrect(s, r *half, seg *Segment) bool {
	if seg.Flags&ACK == 0 || challenged(s, seg) {
		return false
	}
	return correct(s, r, seg)
}

// send classifies seg, counts it and moves its sender s (the receiver r
// only loses its pending-acknowledgment marks), once precorrect has run.
// It is the sender half of the one update routine: the tracker calls it
// with the two halves in the order of the packet's direction.
func send(s, r *half, seg *Segment) sent {
	f := seg.Flags
	var out sent
	k := classify(s, r, seg)
	out.kind, out.retx = k, retransmitted(s, k, seg)
	out.nth = s.inc(k)
	r.bits &^= probing // anything from the peer ends "right after a probe"
	if k == Keepalive {
		// A probe lies before its receiver's rcv_nxt: it is answered and
		// discarded, and moves nothing (see receiveProbe).
		s.bits |= probing
		return out
	}
	s.bits &^= probing
	if k == Fin {
		if !s.has(finSent) && s.state == CloseWait {
			s.bits |= passive
		}
		out.closer = Active
		if s.has(passive) {
			out.closer = Passive
		}
	}
	if !valid(seg) || challenged(s, seg) {
		return out
	}
	switch k {
	case Rst:
		if s.aborts(seg.Seq) {
			s.state, s.move = Closed, 0
		}
	case Syn:
		if s.state == Closed || s.state == Listen {
			s.state = SynSent
		}
	case SynAck:
		switch s.state {
		case TimeWait: // it took a new incarnation's SYN (seen by its timestamp, say)
			s.renew()
			r.synTaken()
			s.state = SynRcvd
		case Closed, Listen, SynSent: // its SYN or the peer's was missed
			s.state = SynRcvd
		}
		s.bits |= synUnacked
	case Fin:
		switch s.state {
		case SynRcvd, Established:
			s.state = FinWait1
		case CloseWait:
			s.state = LastAck
		}
		s.finSeq = seg.Seq.Add(seqnum.Size(seg.Len))
		s.bits |= finSent | finUnacked
	}
	if f&ACK != 0 {
		if k != Rst && r.has(hasNxt) && seg.Ack == r.nxt {
			r.bits |= ackSeen
		}
		if r.acksFin(seg.Ack) {
			r.bits &^= finUnacked
		}
		if r.has(synUnacked) && r.acksOnlySent(seg.Ack) {
			r.bits &^= synUnacked
		}
	}
	if k != Rst {
		s.advance(seg)
	}
	return out
}

// synchronized reports whether the endpoint is in a state where RFC 5961
// answers any SYN with a challenge ACK (TIME_WAIT excepted: a SYN there may
// open a new incarnation).
func (h *half) synchronized() bool {
	switch h.state {
	case Established, FinWait1, FinWait2, Closing, CloseWait, LastAck:
		return true
	}
	return false
}

// correct brings the sender s of seg, which carries ACK, to its
// state as of the send, as far as seg's acknowledgment field shows what s
// had received (the sender correction). The tracker delivers a packet the
// moment it passes, but on the wire it reaches its receiver later, and the
// receiver may meanwhile send a packet written before the first arrived:
//
//   - a move that a delivery made and s does not acknowledge is taken back
//     (undo), and waits for the segment's arrival: when a later packet of
//     s acknowledges it (here), or when the peer's next packet reaches s,
//     since the segment travels ahead of it (receive);
//   - a move s acknowledges is confirmed;
//   - s taken for SYN_SENT that acknowledges the peer's SYN evidently got
//     the SYN-ACK (one held, or missed).
//
// It reports whether s entered TIME_WAIT.
func correct(s, r *half, seg *Segment) (timeWait bool) {
	if s.move&(mvDelivered|mvInFlight) != 0 && s != r {
		got := s.received(r, seg.Ack)
		switch {
		case s.move&mvDelivered != 0 && !got:
			s.state, s.move = s.undo, s.move&^mvDelivered|mvInFlight
		case s.move&mvInFlight != 0 && got:
			timeWait = s.catchUp(r)
			s.move = 0
		case got:
			s.move = 0
		}
	}
	if seg.Flags&SYN == 0 && s.state == SynSent && r.has(hasISN) && r.acksSyn(seg.Ack) {
		s.state = Established
	}
	return timeWait
}

// received reports whether ack, sent by the endpoint, acknowledges the
// segment of its peer p recorded in its move: for a FIN, the FIN; for the
// data that completed a handshake, its first byte after the peer's SYN
// (without the peer's FIN or ISN nothing can be told: it counts as
// received).
func (h *half) received(p *half, ack seqnum.Value) bool {
	if h.move&mvFin != 0 {
		return !p.has(finSent) || p.finSeq.LessThan(ack)
	}
	return !p.has(hasISN) || p.isn.Add(1).LessThan(ack)
}

// renew makes the endpoint a fresh socket of a new incarnation: its
// sequence space and close are forgotten, its counters kept.
func (h *half) renew() {
	*h = half{data: h.data, acks: h.acks, ctl: h.ctl, state: h.state}
}

// synTaken records that the peer took the endpoint's new SYN: its
// sequence space starts at that SYN.
func (h *half) synTaken() {
	if h.has(synPending) {
		h.bits &^= synPending
		h.nxt = h.isn.Add(1)
	}
}

// advance records the sequence space of seg as seen from the endpoint.
func (h *half) advance(seg *Segment) {
	end := seg.Seq.Add(seg.SeqLen())
	h.bits &^= loose
	if seg.Flags&SYN != 0 && (!h.has(hasISN) || seg.Seq != h.isn) {
		// A first SYN, or a SYN with a new ISN: the sequence space restarts
		// (unless a peer in TIME_WAIT has yet to take it).
		h.isn = seg.Seq
		h.bits = h.bits&^(acked|ackSeen|retracted) | hasISN | hasNxt
		if !h.has(synPending) {
			h.nxt = end
			h.bits |= unreached
		}
		return
	}
	if !h.has(hasNxt) || h.nxt.LessThan(end) {
		h.nxt = end
		h.bits = h.bits&^(acked|ackSeen) | hasNxt
		if seg.SeqLen() > 0 {
			h.bits |= unreached
		}
	}
}

// reached records that seg, sent by the endpoint, reached its peer: one
// that ends at nxt brings the peer's rcv_nxt up to it, as does one that
// ends past a retracted nxt (a copy held while Tracker.Retract took it
// back). Segments without sequence space (RSTs, pure ACKs) show nothing.
func (h *half) reached(seg *Segment) {
	if !h.has(unreached) || seg.Flags&RST != 0 || seg.SeqLen() == 0 {
		return
	}
	end := seg.Seq.Add(seg.SeqLen())
	switch {
	case end == h.nxt:
	case h.has(retracted) && h.nxt.LessThan(end):
		h.nxt = end
	default:
		return
	}
	h.bits &^= unreached | retracted
}

// receive moves the receiver r of seg, sent by s, as RFC 9293 (and Linux)
// would on its arrival. It reports whether r entered or re-entered
// TIME_WAIT, which (re)starts the 2×MSL timer. It is the receiver half of
// the one update routine.
func receive(r, s *half, seg *Segment) (timeWait bool) {
	f := seg.Flags
	if f&ACK != 0 && seg.Ack == r.nxt {
		r.bits |= acked
	}
	if r.move == 0 && r.state == Established && f&(SYN|FIN|RST) == 0 {
		return false // the data phase: nothing to move or record
	}
	if r.move&mvInFlight != 0 {
		// A segment of s that r had not received when it last sent travels
		// ahead of this one: it arrives first.
		timeWait = r.catchUp(s)
	}
	old := r.state
	switch {
	case f&RST != 0:
		if rstAccepted(r, s, seg) {
			r.state, r.move = Closed, 0
		}
		return timeWait && r.state == TimeWait
	case f&SYN != 0 && f&ACK == 0:
		switch r.state {
		case Closed, Listen, SynSent: // a listener is implicit; SYN_SENT is a simultaneous open
			r.state = SynRcvd
			s.synTaken()
		case TimeWait:
			// Linux takes a SYN in TIME_WAIT for a new incarnation when it
			// lies beyond rcv_nxt (or carries a newer timestamp, which the
			// tracker does not see: the SYN-ACK then corrects the sender);
			// otherwise it answers with a challenge ACK and stays.
			if s.has(synPending) && s.nxt.LessThan(seg.Seq) {
				r.renew()
				r.state = SynRcvd
				s.synTaken()
			}
		}
		return timeWait
	case f&SYN != 0:
		if (r.state == SynSent || r.state == SynRcvd) && r.acksOnlySent(seg.Ack) {
			r.state = Established
		}
		return timeWait
	case f&ACK == 0:
		return timeWait // discarded, see valid
	}
	switch r.state {
	case SynRcvd:
		// Any other ACK draws an RST from Linux and changes nothing
		// (tcp_check_req): an old connection's ACK, say, from a peer in
		// TIME_WAIT answering the SYN-ACK to a stale SYN.
		if r.acksOnlySent(seg.Ack) {
			r.state = Established
		}
	case FinWait1:
		if r.acksFin(seg.Ack) {
			r.state = FinWait2
		}
	case Closing:
		if r.acksFin(seg.Ack) {
			r.state = TimeWait
		}
	case LastAck:
		if r.acksFin(seg.Ack) {
			r.state = Closed
		}
	}
	if f&FIN != 0 {
		switch r.state {
		case Established:
			r.state = CloseWait
		case FinWait1:
			r.state = Closing
		case FinWait2:
			r.state = TimeWait
		case TimeWait:
			timeWait = true // a retransmitted FIN: Linux re-ACKs and restarts the timer
		}
	}
	// Only a FIN, or the data that completes a handshake, makes a move
	// that the receiver's acknowledgment may contradict: one made by a SYN
	// never is (an endpoint that has not received the peer's SYN sends
	// nothing with ACK), one made by a segment without sequence space
	// leaves no trace in it.
	if r != s && ((r.state != old && (f&FIN != 0 || old == SynRcvd && seg.Len > 0)) || r.move&mvDelivered != 0) {
		r.note(old, seg)
	}
	return timeWait || (r.state == TimeWait && old != TimeWait)
}

// receiveProbe moves the receiver r of a keepalive probe sent by s: the
// probe lies before r's rcv_nxt, so r answers it with an ACK and otherwise
// discards it (RFC 9293 §3.10.7.4); only a segment of s that r had not
// received when it last sent (see correct) arrives ahead of it. It reports
// whether r entered TIME_WAIT.
func receiveProbe(r, s *half) (timeWait bool) {
	if r.move&mvInFlight != 0 && r != s {
		return r.catchUp(s)
	}
	return false
}

// catchUp delivers the endpoint's move in flight (see correct), remembered
// again as delivered, and reports whether the endpoint entered TIME_WAIT.
func (h *half) catchUp(p *half) (timeWait bool) {
	a, old := h.move&arrivalBits, h.state
	h.move = 0
	timeWait = receive(h, p, &Segment{Flags: a.flags(), Ack: h.ackFor(a)})
	h.undo, h.move = old, a|mvDelivered
	return timeWait
}

// note records in the endpoint's move the arrival of seg, which found it
// in state old: a move is remembered until the endpoint's acknowledgment
// confirms or contradicts it (see correct); a later segment travels behind
// the remembered one, so what it acknowledged reaches the endpoint no
// earlier.
func (h *half) note(old State, seg *Segment) {
	a := moveBits(0)
	if h.acksSyn(seg.Ack) {
		a |= mvAcksSyn
	}
	if h.acksFin(seg.Ack) {
		a |= mvAcksFin
	}
	switch {
	case h.state == old || seg.Flags&SYN != 0 || (seg.Len == 0 && seg.Flags&FIN == 0):
		if h.move&mvDelivered != 0 {
			h.move |= a & (mvAcksSyn | mvAcksFin)
		}
	default:
		if seg.Flags&FIN != 0 {
			a |= mvFin
		}
		h.undo, h.move = old, a|mvDelivered
	}
}

// flags returns the TCP flags of a remembered arrival: every one carried
// an ACK (a segment without one moves nobody).
func (a moveBits) flags() Flags {
	if a&mvFin != 0 {
		return FIN | ACK
	}
	return ACK
}

// ackFor returns an acknowledgment number that covers the endpoint's SYN
// and FIN as the remembered arrival a did.
func (h *half) ackFor(a moveBits) seqnum.Value {
	switch {
	case a&mvAcksFin != 0:
		return h.finSeq.Add(1)
	case a&mvAcksSyn != 0:
		return h.isn.Add(1)
	}
	return h.isn
}

// rstAccepted applies the RST acceptability check of RFC 9293 and RFC 5961
// as Linux does: in SYN_SENT an RST counts only if it acknowledges the SYN
// and nothing beyond what the receiver sent (ISS < SEG.ACK =< SND.NXT);
// in SYN_RCVD it may lie anywhere in the window from the SYN's sequence
// number + 1 (Linux's tcp_check_req; RFC 5961 applies to synchronized
// states only); in LISTEN or CLOSED it is ignored; elsewhere it must be in
// place (see rstInPlace). An RST elsewhere in the window draws a challenge ACK and
// changes nothing (RFC 5961 §3); one outside it is dropped.
func rstAccepted(r, s *half, seg *Segment) bool {
	switch r.state {
	case Closed, Listen:
		return false
	case SynSent:
		return seg.Flags&ACK != 0 && r.acksOnlySent(seg.Ack)
	case SynRcvd:
		if s.has(hasISN) {
			// All r took of s is its SYN: rcv_nxt is the ISN+1, whatever
			// else the middle saw of s (an old connection's ACK, say), and
			// the RST may lie anywhere in the window from there.
			return seg.Seq.InWindow(s.isn.Add(1), rstWindow)
		}
	}
	return rstInPlace(r, s, seg.Seq)
}

// acksOnlySent reports whether ack, sent to the endpoint, acknowledges its
// SYN and nothing beyond what it sent (ISS < SEG.ACK =< SND.NXT), as a
// SYN_SENT or SYN_RCVD socket requires (loosely as acksSyn without the ISN,
// without the end of the sequence space).
func (h *half) acksOnlySent(ack seqnum.Value) bool {
	return h.acksSyn(ack) && (!h.has(hasNxt) || ack.LessThanEq(h.nxt))
}

// rstInPlace reports whether an RST of s with sequence number seq lies
// where the receiver r expects it: at r's rcv_nxt, taken to be the next
// sequence number the middle expects from s, or rcv_nxt-1 in CLOSE_WAIT,
// LAST_ACK and CLOSING (Linux's tcp_reset_check: an RST sent after the
// peer's FIN); nothing but rcv_nxt in TIME_WAIT. When the middle may not
// have seen all that s sent (s.nxt unknown or loose), anything from rcv_nxt
// to rstWindow ahead of it is taken to be in place.
func rstInPlace(r, s *half, seq seqnum.Value) bool {
	switch {
	case !s.has(hasNxt) || seq == s.nxt:
		return true
	case s.has(loose):
		return seq.InWindow(s.nxt, rstWindow)
	}
	return seq == s.nxt-1 && (r.state == CloseWait || r.state == LastAck || r.state == Closing)
}

// aborts reports whether an RST with sequence number seq ends the
// endpoint that sends it. A SYN_SENT socket resets only an unacceptable
// ACK and keeps waiting for its SYN-ACK; a SYN_RCVD one that has sent its
// SYN-ACK sends an RST of its own only at its snd_nxt, and any other
// answers an unacceptable segment (<SEQ=SEG.ACK><CTL=RST>, RFC 9293
// §3.10.7.4) and changes nothing; elsewhere an RST in the endpoint's own
// sequence space (see owns) ends it, whether or not its receiver takes it.
func (h *half) aborts(seq seqnum.Value) bool {
	switch h.state {
	case SynSent:
		return false
	case SynRcvd:
		return !h.has(hasNxt) || seq == h.nxt
	}
	return h.owns(seq)
}

// owns reports whether seq is plausibly the endpoint's own: within
// rstWindow of the next sequence number expected from it, or anything if
// that is unknown. An RST outside it was not sent by this incarnation's
// socket (a stale or forged one) and moves neither end.
func (h *half) owns(seq seqnum.Value) bool {
	return !h.has(hasNxt) || seq.InWindow(h.nxt-seqnum.Value(rstWindow), 2*rstWindow)
}
