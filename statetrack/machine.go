package statetrack

import "github.com/tcpchaos/tcpchaos/statetrack/seqnum"

// half is one endpoint of a connection as seen from the middle: its
// sequence space, its FIN, its inferred state and its per-kind packet
// counters. It is 32 bytes.
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
	// Syn..Rst. The counts saturate at 255.
	ctl   [Rst]uint8
	state State
	bits  halfBits
}

// halfBits are the boolean facts of a half.
type halfBits uint8

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
// sender an RST may lie and still be accepted: a loose stand-in for the
// receiver's window, which the middle cannot know exactly (the window scale
// and the receiver's rcv_nxt are not on every packet). Far-off RSTs, such
// as one from an old incarnation, are refused.
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
	case seg.Len > 0:
		return Data
	case f&ACK == 0:
		return Ack
	case r.has(finUnacked) && r.acksFin(seg.Ack):
		if s.has(finSent) {
			return FinalAck
		}
		return FinAck
	case r.has(synUnacked) && r.acksSyn(seg.Ack):
		return HandshakeAck
	}
	return Ack
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

// send classifies seg, counts it and moves its sender s (the receiver r
// only loses its pending-acknowledgment marks). It is the sender half of
// the one update routine: the tracker calls it with the two halves in the
// order of the packet's direction.
func send(s, r *half, seg *Segment) sent {
	k := classify(s, r, seg)
	out := sent{kind: k, retx: retransmitted(s, k, seg)}
	out.nth = s.inc(k)
	f := seg.Flags
	if k == Fin {
		if !s.has(finSent) && s.state == CloseWait {
			s.bits |= passive
		}
		out.closer = Active
		if s.has(passive) {
			out.closer = Passive
		}
	}
	if !valid(seg) {
		return out
	}
	// A sender still taken for SYN_SENT that acknowledges the peer's SYN
	// evidently received the SYN-ACK.
	if f&ACK != 0 && f&SYN == 0 && s.state == SynSent && r.has(hasISN) && r.acksSyn(seg.Ack) {
		s.state = Established
	}
	switch k {
	case Rst:
		if s.owns(seg.Seq) {
			s.state = Closed
		}
	case Syn:
		if s.state == Closed || s.state == Listen {
			s.state = SynSent
		}
	case SynAck:
		if s.state <= SynSent { // Closed, Listen, SynSent: its SYN or the peer's was missed
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
		if r.acksFin(seg.Ack) {
			r.bits &^= finUnacked
		}
		if r.has(synUnacked) && r.acksSyn(seg.Ack) {
			r.bits &^= synUnacked
		}
	}
	if k != Rst {
		s.advance(seg)
	}
	return out
}

// advance records the sequence space of seg as seen from the endpoint.
func (h *half) advance(seg *Segment) {
	end := seg.Seq.Add(seg.SeqLen())
	if seg.Flags&SYN != 0 && (!h.has(hasISN) || seg.Seq != h.isn) {
		// A first SYN, or a SYN with a new ISN: the sequence space restarts.
		h.isn, h.nxt = seg.Seq, end
		h.bits |= hasISN | hasNxt
		return
	}
	if !h.has(hasNxt) || h.nxt.LessThan(end) {
		h.nxt = end
		h.bits |= hasNxt
	}
}

// receive moves the receiver r of seg, sent by s, as RFC 9293 (and Linux)
// would on its arrival. It reports whether r entered or re-entered
// TIME_WAIT, which (re)starts the 2×MSL timer. It is the receiver half of
// the one update routine.
func receive(r, s *half, seg *Segment) (timeWait bool) {
	f := seg.Flags
	old := r.state
	switch {
	case f&RST != 0:
		if rstAccepted(r, s, seg) {
			r.state = Closed
		}
		return false
	case f&SYN != 0 && f&ACK == 0:
		switch r.state {
		case Closed, Listen, SynSent: // a listener is implicit; SYN_SENT is a simultaneous open
			r.state = SynRcvd
		}
		return false
	case f&SYN != 0:
		if (r.state == SynSent || r.state == SynRcvd) && r.acksSyn(seg.Ack) {
			r.state = Established
		}
		return false
	case f&ACK == 0:
		return false // discarded, see valid
	}
	switch r.state {
	case SynRcvd:
		if r.acksSyn(seg.Ack) {
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
			return true // a retransmitted FIN: Linux re-ACKs and restarts the timer
		}
	}
	return r.state == TimeWait && old != TimeWait
}

// rstAccepted applies the RST acceptability check of RFC 9293 and RFC 5961
// as Linux does: in SYN_SENT an RST counts only if it acknowledges the SYN
// and nothing beyond what the receiver sent (ISS < SEG.ACK =< SND.NXT);
// in LISTEN or CLOSED it is ignored; elsewhere its sequence number must be
// the receiver's rcv_nxt, taken to be the next sequence number the middle
// expects from the RST's sender. rcv_nxt-1 is accepted too in CLOSE_WAIT,
// LAST_ACK and CLOSING (Linux's tcp_reset_check: an RST sent after the
// peer's FIN), and nothing but rcv_nxt in TIME_WAIT. An RST behind that is
// stale (Linux ignores it); one ahead of it, within rstWindow, is accepted
// because the middle may not have seen the sender's latest data (a
// connection picked up mid-stream, or a data phase that bypassed the queue).
func rstAccepted(r, s *half, seg *Segment) bool {
	switch r.state {
	case Closed, Listen:
		return false
	case SynSent:
		return seg.Flags&ACK != 0 && r.acksSyn(seg.Ack) && (!r.has(hasNxt) || !r.nxt.LessThan(seg.Ack))
	}
	if !s.has(hasNxt) || seg.Seq == s.nxt {
		return true
	}
	switch r.state {
	case TimeWait:
		return false
	case CloseWait, LastAck, Closing:
		if seg.Seq == s.nxt-1 {
			return true
		}
	}
	return seg.Seq.InWindow(s.nxt, rstWindow)
}

// owns reports whether seq is plausibly the endpoint's own: within
// rstWindow of the next sequence number expected from it, or anything if
// that is unknown. An RST outside it was not sent by this incarnation's
// socket (a stale or forged one) and moves neither end.
func (h *half) owns(seq seqnum.Value) bool {
	return !h.has(hasNxt) || seq.InWindow(h.nxt-seqnum.Value(rstWindow), 2*rstWindow)
}
