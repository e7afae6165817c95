package statetrack

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"net/netip"
)

// tupleKey is the packed, direction-free 4-tuple of a connection: address
// A (16 bytes, IPv4 as IPv4-mapped), address B, port A, port B (big
// endian), and the address family (4 or 6). A is the lesser endpoint. It is
// half the size of a Key, which matters at a million connections.
type tupleKey [37]byte

const famOff = 36

// packKey packs the tuple of a segment from src to dst and reports whether
// src is endpoint A. An IPv6 zone is not part of the key.
func packKey(src, dst netip.AddrPort) (k tupleKey, srcIsA bool) {
	s, d := src.Addr().As16(), dst.Addr().As16()
	c := bytes.Compare(s[:], d[:])
	srcIsA = c < 0 || (c == 0 && src.Port() <= dst.Port())
	a, b, pa, pb := s, d, src.Port(), dst.Port()
	if !srcIsA {
		a, b, pa, pb = d, s, dst.Port(), src.Port()
	}
	copy(k[0:16], a[:])
	copy(k[16:32], b[:])
	binary.BigEndian.PutUint16(k[32:34], pa)
	binary.BigEndian.PutUint16(k[34:36], pb)
	k[famOff] = 6
	if src.Addr().Is4() {
		k[famOff] = 4
	}
	return k, srcIsA
}

// endpoints unpacks the key's two endpoints A and B.
func (k *tupleKey) endpoints() (a, b netip.AddrPort) {
	addr := func(b []byte) netip.Addr {
		if k[famOff] == 4 {
			return netip.AddrFrom4([4]byte(b[12:16]))
		}
		return netip.AddrFrom16([16]byte(b))
	}
	return netip.AddrPortFrom(addr(k[0:16]), binary.BigEndian.Uint16(k[32:34])),
		netip.AddrPortFrom(addr(k[16:32]), binary.BigEndian.Uint16(k[34:36]))
}

// self reports whether both endpoints are one socket (a self-connect).
func (k *tupleKey) self() bool {
	return [16]byte(k[0:16]) == [16]byte(k[16:32]) && k[32] == k[34] && k[33] == k[35]
}

// none marks the end of an intrusive list or hash chain.
const none int32 = -1

// conn is one tracked connection: 144 bytes, linked into the hash index by
// hnext, into the activity (LRU) list and, while an endpoint sits in
// TIME_WAIT, into the TIME_WAIT list, all by slab index.
type conn struct {
	key   tupleKey
	flags connFlags
	// gen is the slot's generation: the high half of the ConnID. It changes
	// every time the slot is freed, so stale ConnIDs do not match.
	gen              uint32
	hnext            int32
	lruPrev, lruNext int32
	twPrev, twNext   int32
	// last is the time of the last packet observed or delivered, twAt the
	// time an endpoint last entered TIME_WAIT (both Unix nanoseconds).
	last, twAt int64
	// h holds the half-connections indexed by Side. A self-connect uses
	// h[Client] only.
	h [2]half
}

type connFlags uint8

const (
	inUse connFlags = 1 << iota
	clientIsB
	selfConn
	midstream
	inTimeWait
	// quiet: the connection's data phase bypasses the tracker (see
	// Tracker.Quiet); the slot is on the quiet list, not the lru list.
	quiet
)

// ends returns the sender's and the receiver's halves for a packet from
// side from: the same half twice for a self-connect.
func (c *conn) ends(from Side) (s, r *half) {
	if c.flags&selfConn != 0 {
		return &c.h[Client], &c.h[Client]
	}
	return &c.h[from], &c.h[from.Other()]
}

// states returns both endpoints' states.
func (c *conn) states() [2]State {
	if c.flags&selfConn != 0 {
		return [2]State{c.h[Client].state, c.h[Client].state}
	}
	return [2]State{c.h[Client].state, c.h[Server].state}
}

// sideOf returns the side of the endpoint that is A in the key (or B).
func (c *conn) sideOf(isA bool) Side {
	if c.flags&selfConn != 0 || isA != (c.flags&clientIsB != 0) {
		return Client
	}
	return Server
}

// clientServer returns the connection's endpoints as the client sees them.
func (c *conn) clientServer() (client, server netip.AddrPort) {
	a, b := c.key.endpoints()
	if c.flags&clientIsB != 0 {
		return b, a
	}
	return a, b
}

// The slab is allocated in pages of pageSize connections: it grows
// without copying (no latency spike on the packet path) and without the
// slack of a doubling slice.
const (
	pageBits = 12
	pageSize = 1 << pageBits
	pageMask = pageSize - 1
)

// at returns the connection in slot i.
func (t *Tracker) at(i int32) *conn { return &t.pages[i>>pageBits][i&pageMask] }

// id returns the connection's ConnID: generation and slab index.
func (t *Tracker) id(i int32) uint64 { return uint64(t.at(i).gen)<<32 | uint64(uint32(i)) }

// byID returns the slot of a live connection with ConnID id.
func (t *Tracker) byID(id uint64) (int32, bool) {
	slot := uint32(id)
	if id == 0 || slot >= uint32(t.used) {
		return none, false
	}
	i := int32(slot)
	if c := t.at(i); c.flags&inUse == 0 || c.gen != uint32(id>>32) {
		return none, false
	}
	return i, true
}

// hash returns the index key of k: 32 bits of a seeded hash, which halves
// the index's size; the chains resolve the collisions.
func (t *Tracker) hash(k *tupleKey) uint32 { return uint32(maphash.Bytes(t.seed, k[:])) }

// find returns the slab index of the connection with key k, or none.
func (t *Tracker) find(h uint32, k *tupleKey) int32 {
	i, ok := t.index[h]
	if !ok {
		return none
	}
	for ; i != none; i = t.at(i).hnext {
		if t.at(i).key == *k {
			return i
		}
	}
	return none
}

// alloc takes a free slot for key k (hash h), links it into the index and
// at the front of the activity list, and returns it zeroed but for its
// links, key, generation and time.
func (t *Tracker) alloc(h uint32, k *tupleKey, now int64) int32 {
	var i int32
	if t.free != none {
		i = t.free
		t.free = t.at(i).lruNext
	} else {
		if t.used&pageMask == 0 {
			t.pages = append(t.pages, make([]conn, pageSize))
		}
		i = t.used
		t.used++
		t.at(i).gen = 1
	}
	c := t.at(i)
	*c = conn{key: *k, flags: inUse, gen: c.gen, last: now, twPrev: none, twNext: none}
	c.hnext = none
	if j, ok := t.index[h]; ok {
		c.hnext = j
	}
	t.index[h] = i
	t.pushFront(&t.lru, i)
	t.n++
	return i
}

// release unlinks slot i from the index and the lists and frees it.
func (t *Tracker) release(i int32) {
	c := t.at(i)
	h := t.hash(&c.key)
	if head := t.index[h]; head == i {
		if c.hnext == none {
			delete(t.index, h)
		} else {
			t.index[h] = c.hnext
		}
	} else {
		for j := head; j != none; j = t.at(j).hnext {
			if t.at(j).hnext == i {
				t.at(j).hnext = c.hnext
				break
			}
		}
	}
	t.unlink(t.listOf(i), i)
	t.twUnlink(i)
	c.flags = 0
	if c.gen++; c.gen == 0 {
		c.gen = 1
	}
	c.lruNext = t.free
	t.free = i
	t.n--
}

// activity is an activity-ordered list of slots, linked by lruPrev and
// lruNext: head most, tail least recently active. A slot is on the
// tracker's lru list, or on its quiet list while its connection is quiet.
type activity struct{ head, tail int32 }

// listOf returns the activity list slot i is on.
func (t *Tracker) listOf(i int32) *activity {
	if t.at(i).flags&quiet != 0 {
		return &t.quiet
	}
	return &t.lru
}

func (t *Tracker) pushFront(l *activity, i int32) {
	c := t.at(i)
	c.lruPrev, c.lruNext = none, l.head
	if l.head != none {
		t.at(l.head).lruPrev = i
	} else {
		l.tail = i
	}
	l.head = i
}

func (t *Tracker) unlink(l *activity, i int32) {
	c := t.at(i)
	if c.lruPrev != none {
		t.at(c.lruPrev).lruNext = c.lruNext
	} else {
		l.head = c.lruNext
	}
	if c.lruNext != none {
		t.at(c.lruNext).lruPrev = c.lruPrev
	} else {
		l.tail = c.lruPrev
	}
	c.lruPrev, c.lruNext = none, none
}

// touch records activity on slot i at now, moving it to the front of its
// activity list.
func (t *Tracker) touch(i int32, now int64) {
	t.at(i).last = now
	if l := t.listOf(i); l.head != i {
		t.unlink(l, i)
		t.pushFront(l, i)
	}
}

// setQuiet moves slot i between the lru and the quiet list.
func (t *Tracker) setQuiet(i int32, on bool) {
	c := t.at(i)
	if (c.flags&quiet != 0) == on {
		return
	}
	t.unlink(t.listOf(i), i)
	c.flags ^= quiet
	t.pushFront(t.listOf(i), i)
}

// twPushBack (re)starts slot i's TIME_WAIT timer at now: the TIME_WAIT
// list stays ordered by deadline because every entry lasts 2×MSL.
func (t *Tracker) twPushBack(i int32, now int64) {
	t.twUnlink(i)
	c := t.at(i)
	c.twAt = now
	c.flags |= inTimeWait
	c.twPrev, c.twNext = t.twTail, none
	if t.twTail != none {
		t.at(t.twTail).twNext = i
	} else {
		t.twHead = i
	}
	t.twTail = i
}

func (t *Tracker) twUnlink(i int32) {
	c := t.at(i)
	if c.flags&inTimeWait == 0 {
		return
	}
	if c.twPrev != none {
		t.at(c.twPrev).twNext = c.twNext
	} else {
		t.twHead = c.twNext
	}
	if c.twNext != none {
		t.at(c.twNext).twPrev = c.twPrev
	} else {
		t.twTail = c.twPrev
	}
	c.twPrev, c.twNext = none, none
	c.flags &^= inTimeWait
}
